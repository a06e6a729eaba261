"""Which deployments of an alias may receive this request, and why the others may not.

The key's model allow-list is checked first, then the request's data class is settled (key,
team, header, and what the detector found), then each deployment is checked against the egress
rules. When none of the alias's deployments is allowed because the detector found sensitive
data, the request is rerouted to the configured fallback alias (usually a local model) —
sensitive data changes where a request goes rather than whether it is served, unless the key's
allow-list excludes that alias. A refusal by the key's or team's own rules is a 403 naming the
rule.

A `good_enough` route's name is authorised like any alias (a key allowed the name may use it);
its candidates are the alias the evidence chose for the request's task, then the reference, and
each of their deployments passes the same egress checks.

This is the one place these decisions are made: the request path calls it, and so does
`entrepot route --explain`, which passes a `Trace` to see each decision instead of only the
result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from entrepot.exceptions import ModelNotFoundError
from entrepot.policy.access import authorize_model, unknown_model
from entrepot.policy.detector import PiiDetector
from entrepot.policy.egress import EgressPolicy, Verdict
from entrepot.routing.good_enough import Decision
from entrepot.routing.table import Deployment, RoutingTable
from entrepot.types import JSON, ApiKey, Attempt

# A deployment's attempt outcome when the egress rules kept the request from it (the breaker's
# "skipped" is another matter): the console counts reroutes and denials by it (migration 0010).
EXCLUDED = "excluded"


@dataclass(slots=True)
class Eligibility:
    data_class: str
    findings: dict[str, int]
    deployments: list[Deployment]
    alias: str
    skipped: list[Attempt] = field(default_factory=list)
    decision: Decision | None = None  # a good_enough route's choice


@dataclass(slots=True)
class Trace:
    """Filled in by `eligible_deployments` as it decides, for an explanation; the request path
    passes none."""

    verdicts: list[tuple[str, Deployment, Verdict]] = field(default_factory=list)
    reroute_refused: str | None = None
    decision: Decision | None = None


def classify_request(
    detector: PiiDetector,
    egress: EgressPolicy,
    key: ApiKey | None,
    body: JSON,
    class_header: str | None,
) -> tuple[str, dict[str, int]]:
    """The request's data class, and what the detector found that may have raised it."""
    findings = detector.scan(body)
    data_class = egress.classify(
        key_class=key.data_class if key else None,
        team=key.team if key else None,
        header=class_header,
        findings=findings,
    )
    return data_class, findings


def eligible_deployments(
    *,
    table: RoutingTable,
    detector: PiiDetector,
    egress: EgressPolicy,
    key: ApiKey | None,
    alias: str,
    body: JSON,
    class_header: str | None,
    offline: bool,
    reroute_alias: str | None,
    task: str | None = None,
    trace: Trace | None = None,
) -> Eligibility:
    authorize_model(key, alias)
    data_class, findings = classify_request(detector, egress, key, body, class_header)
    team = key.team if key else None
    decision = table.choose(alias, task)
    result = Eligibility(data_class, findings, [], alias, decision=decision)
    if trace is not None:
        trace.decision = decision
    refused: list[tuple[str, Verdict]] = []
    # Only a class the detector raised reroutes; a key's or team's own rules fail loudly. A key
    # limited to some models is not rerouted to another: it gets the refusal instead.
    fallback = None
    if findings and reroute_alias is not None:
        if key is None or key.may_use(reroute_alias):
            fallback = reroute_alias
        elif trace is not None:
            trace.reroute_refused = f"key {key.name!r} may not use {reroute_alias!r}"
    groups = [(alias, decision.aliases if decision else (alias,))]
    if fallback is not None and fallback != alias:
        groups.append((fallback, (fallback,)))
    for served, members in groups:
        for member in members:
            for deployment in _deployments(table, member, key):
                verdict = egress.check(
                    data_class=data_class, team=team, deployment=deployment.config, offline=offline
                )
                if trace is not None:
                    trace.verdicts.append((member, deployment, verdict))
                if verdict.allowed:
                    result.deployments.append(deployment)
                else:
                    refused.append((deployment.name, verdict))
                    result.skipped.append(Attempt(deployment.name, EXCLUDED, verdict.reason))
        if result.deployments:
            result.alias = served
            return result
    raise egress.blocked_error(alias, data_class, refused, findings)


def _deployments(table: RoutingTable, alias: str, key: ApiKey | None) -> list[Deployment]:
    """An alias's deployments; an unknown one is refused naming those the key may use."""
    try:
        return table.resolve(alias)
    except ModelNotFoundError:
        raise unknown_model(key, alias, table.aliases) from None
