"""`entrepot route --explain`: for a key, a model and a sample request, every candidate
deployment with the rule or state that admits or rejects it — the same decisions the request
path makes, shown instead of taken."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from entrepot.config import Config
from entrepot.policy.detector import PiiDetector
from entrepot.policy.egress import EgressPolicy
from entrepot.policy.eligibility import classify_request
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
class RouteExplanation:
    alias: str
    data_class: str
    findings: dict[str, int]
    strategy: str
    candidates: list[CandidateExplanation]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def explain_route(
    *,
    config: Config,
    table: RoutingTable,
    router: Router,
    key: ApiKey | None,
    alias: str,
    body: JSON,
    class_header: str | None = None,
    offline: bool = False,
) -> RouteExplanation:
    detector = PiiDetector(config.policy.detector)
    egress = EgressPolicy(config.policy, config.teams)
    data_class, findings = classify_request(detector, egress, key, body, class_header)
    team = key.team if key else None
    rows: list[CandidateExplanation] = []
    served_by: str | None = None
    fallback = config.policy.reroute_alias if findings else None
    for candidate_alias in dict.fromkeys(a for a in (alias, fallback) if a):
        if served_by is not None:
            break
        admitted = []
        for deployment in table.resolve(candidate_alias):
            verdict = egress.check(
                data_class=data_class, team=team, deployment=deployment.config, offline=offline
            )
            circuit = deployment.breaker.state
            ok = verdict.allowed and circuit != "open"
            reason = verdict.reason if not verdict.allowed or circuit != "open" else "circuit open"
            if ok:
                admitted.append(deployment)
            rows.append(
                CandidateExplanation(
                    None,
                    candidate_alias,
                    deployment.name,
                    deployment.config.jurisdiction,
                    ok,
                    reason,
                    circuit,
                    deployment.in_flight,
                )
            )
        if admitted:
            served_by = candidate_alias
            ranks = {d.name: i + 1 for i, d in enumerate(router.order(candidate_alias, admitted))}
            rows = [
                CandidateExplanation(ranks.get(r.deployment), *list(asdict(r).values())[1:])
                if r.alias == candidate_alias
                else r
                for r in rows
            ]
    strategy = config.route(served_by or alias).strategy
    return RouteExplanation(served_by or alias, data_class, findings, strategy, rows)
