"""`entrepot route --explain`: for a key, a model and a sample request, every candidate
deployment with the rule or state that admits or rejects it.

It cannot disagree with the request path because it does not decide anything itself: the key's
allow-list, the data class, the egress rules and the reroute come from `eligible_deployments`
(with a `Trace` to see each verdict), the order and each circuit's answer from
`Router.preview` (the breaker's non-mutating `refusal`, the same check `admit` makes). Where
serving would refuse the request, the explanation carries that refusal — the status, code and
message the client would get.

For a `good_enough` route, the explanation also lists the verdict the route's one decision
(`routing.good_enough.decide`, reached through `eligible_deployments`) gave each candidate, with
the evidence it read: score, intervals, items, date and cost per item.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from entrepot.config import Config
from entrepot.exceptions import EgressDeniedError, GatewayError
from entrepot.policy.detector import PiiDetector
from entrepot.policy.egress import EgressPolicy
from entrepot.policy.eligibility import Eligibility, Trace, eligible_deployments
from entrepot.routing.good_enough import Decision, request_task
from entrepot.routing.router import Router
from entrepot.routing.table import RoutingTable
from entrepot.types import JSON, ApiKey


@dataclass(frozen=True, slots=True)
class CandidateExplanation:
    order: int | None
    alias: str
    deployment: str
    jurisdiction: str
    admitted: bool
    reason: str
    circuit: str
    in_flight: int


@dataclass(frozen=True, slots=True)
class EvidenceExplanation:
    """One candidate of a good_enough route: whether it was chosen and why, and the published
    evidence the decision read (the fields are None where there was none)."""

    alias: str
    chosen: bool
    reason: str
    evidence_id: str | None
    published: str | None
    items: int | None
    score: float | None
    score_low: float | None
    score_high: float | None
    relative: float | None
    relative_low: float | None
    relative_high: float | None
    cost_per_item: float | None
    currency: str | None
    price_date: str | None


def _evidence_rows(decision: Decision | None) -> list[EvidenceExplanation]:
    rows = []
    for verdict in decision.verdicts if decision is not None else ():
        e = verdict.evidence
        cost = e.cost_per_item_nanos if e is not None else None
        rows.append(
            EvidenceExplanation(
                verdict.alias,
                verdict.chosen,
                verdict.reason,
                e.id if e else None,
                e.published_at.strftime("%Y-%m-%d %H:%M UTC") if e else None,
                e.items if e else None,
                e.score if e else None,
                e.score_low if e else None,
                e.score_high if e else None,
                e.relative if e else None,
                e.relative_low if e else None,
                e.relative_high if e else None,
                cost / 1e9 if cost is not None else None,
                e.currency if e else None,
                e.price_date if e else None,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class Refusal:
    """What the client would be answered instead of being routed."""

    status: int
    code: str
    message: str

    @classmethod
    def of(cls, exc: GatewayError) -> Refusal:
        return cls(exc.status_code, exc.code or exc.error_type, exc.message)


@dataclass(frozen=True, slots=True)
class RouteExplanation:
    alias: str
    requested: str  # the model name asked for; `alias` differs when `model_names` mapped it
    data_class: str | None
    findings: dict[str, int]
    strategy: str
    candidates: list[CandidateExplanation]
    refusal: Refusal | None
    notes: list[str]
    task: str | None = None
    evidence: list[EvidenceExplanation] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def explain_route(
    *,
    config: Config,
    table: RoutingTable,
    router: Router,
    detector: PiiDetector,
    egress: EgressPolicy,
    key: ApiKey | None,
    alias: str,
    body: JSON,
    class_header: str | None = None,
    task_header: str | None = None,
    offline: bool = False,
) -> RouteExplanation:
    trace = Trace()
    refusal: Refusal | None = None
    eligibility: Eligibility | None = None
    data_class: str | None = None
    findings: dict[str, int] = {}
    requested, alias = alias, table.alias_for(alias)
    task: str | None = None
    try:
        task = request_task(task_header, key)
        eligibility = eligible_deployments(
            table=table,
            detector=detector,
            egress=egress,
            key=key,
            alias=alias,
            body=body,
            class_header=class_header,
            offline=offline,
            reroute_alias=config.policy.reroute_alias,
            task=task,
            trace=trace,
        )
        data_class, findings = eligibility.data_class, eligibility.findings
    except GatewayError as exc:
        refusal = Refusal.of(exc)
        if isinstance(exc, EgressDeniedError):
            data_class, findings = exc.data_class, exc.findings or {}
    served = eligibility.alias if eligibility is not None else alias
    ranks: dict[str, int] = {}
    skipped: dict[str, str] = {}
    if eligibility is not None:
        for deployment, why in router.preview(served, eligibility.deployments):
            if why is None:
                ranks[deployment.name] = len(ranks) + 1
            else:
                skipped[deployment.name] = why
        if not ranks:
            refusal = Refusal.of(router.unavailable(served))
    rows = [
        CandidateExplanation(
            ranks.get(deployment.name),
            candidate_alias,
            deployment.name,
            deployment.config.jurisdiction,
            deployment.name in ranks,
            skipped.get(deployment.name, verdict.reason),
            deployment.breaker.state,
            deployment.in_flight,
        )
        for candidate_alias, deployment, verdict in trace.verdicts
    ]
    notes = [trace.reroute_refused] if trace.reroute_refused else []
    if alias != requested:
        notes.insert(0, f"{requested!r} is served by alias {alias!r} (a model_names rule)")
    strategy = config.route(served).strategy
    return RouteExplanation(
        served,
        requested,
        data_class,
        findings,
        strategy,
        rows,
        refusal,
        notes,
        task,
        _evidence_rows(trace.decision),
    )
