"""Where a request may be processed, given how sensitive its data is and whose it is.

Data classes are ordered by sensitivity, and a request's class can only ever be raised — by its
team, its key, a client header or the detector — never lowered, so no single party can talk the
gateway into sending data further than the most cautious of them allows. A rule written for a
class also binds every more sensitive class: forbidding a country for `internal` data must not
reopen it for `confidential` data just because that class has a rule of its own.

Every verdict carries a sentence naming the rule that decided it, because a refusal the operator
cannot trace to a line of configuration is a refusal they will switch off. Verdicts mention
deployments, classes and jurisdictions only — never anything from the request itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from entrepot.config import JurisdictionRule, ModelConfig, PolicyConfig, TeamConfig
from entrepot.exceptions import EgressDeniedError, InvalidRequestError

CLASS_HEADER = "x-entrepot-data-class"
LOCAL = "local"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str


class EgressPolicy:
    def __init__(self, config: PolicyConfig, teams: dict[str, TeamConfig]) -> None:
        self._config = config
        self._teams = teams
        self._rank = {name: i for i, name in enumerate(config.classes)}
        self._by_folded_name = {name.casefold(): name for name in config.classes}
        self._verdicts: dict[tuple[str, str | None, str, bool], Verdict] = {}

    def classify(
        self,
        *,
        key_class: str | None,
        team: str | None,
        header: str | None,
        findings: dict[str, int],
    ) -> str:
        """The most sensitive class any party claims; a blank header counts as no header."""
        claims = [self._config.default_class]
        team_config = self._teams.get(team) if team is not None else None
        if team_config is not None and team_config.data_class in self._rank:
            claims.append(team_config.data_class)
        if key_class in self._rank:
            claims.append(key_class)
        if header is not None and header.strip():
            declared = self._by_folded_name.get(header.strip().casefold())
            if declared is None:
                raise InvalidRequestError(
                    f"{CLASS_HEADER} must name a declared data class: "
                    f"{', '.join(self._config.classes)}",
                    param=CLASS_HEADER,
                )
            claims.append(declared)
        if findings:
            claims.append(self._config.detector.raises_to)
        return max(claims, key=self._rank.__getitem__)

    def check(
        self, *, data_class: str, team: str | None, deployment: ModelConfig, offline: bool
    ) -> Verdict:
        """Offline mode first, then class rules from the most sensitive down, then the team's.

        A verdict depends only on its four inputs, all from small configured sets, so each is
        worked out once and remembered: this runs for every deployment on every request."""
        memo_key = (data_class, team, deployment.deployment, offline)
        verdict = self._verdicts.get(memo_key)
        if verdict is None:
            verdict = self._verdicts[memo_key] = self._decide(data_class, team, deployment, offline)
        return verdict

    def _decide(
        self, data_class: str, team: str | None, deployment: ModelConfig, offline: bool
    ) -> Verdict:
        name = deployment.deployment
        if (offline or self._config.offline) and not deployment.is_local:
            return Verdict(
                False,
                f"offline mode admits only local deployments; {name!r} is remote "
                f"({deployment.jurisdiction})",
            )
        place = _whereabouts(deployment)
        binding = self._config.classes[: self._rank[data_class] + 1]
        for cls in reversed(binding):
            rule = self._config.rules.get(cls)
            broken = _breach(rule, deployment) if rule is not None else None
            if broken:
                return Verdict(False, f"data class {cls!r} {broken}; deployment {name!r} {place}")
        team_config = self._teams.get(team) if team is not None else None
        broken = _breach(team_config.rule, deployment) if team_config is not None else None
        if broken:
            return Verdict(False, f"team {team!r} {broken}; deployment {name!r} {place}")
        return Verdict(
            True, f"allowed: data class {data_class!r} permits {deployment.jurisdiction}"
        )

    def blocked_error(
        self,
        alias: str,
        data_class: str,
        verdicts: list[tuple[str, Verdict]],
        findings: dict[str, int] | None = None,
    ) -> EgressDeniedError:
        """The 403 for a request none of whose deployments may receive it, with every reason."""
        message = f"no deployment of {alias!r} may receive data of class {data_class!r}"
        reasons = "; ".join(f"{deployment}: {verdict.reason}" for deployment, verdict in verdicts)
        if reasons:
            message = f"{message}: {reasons}"
        return EgressDeniedError(
            message,
            param="model",
            data_class=data_class,
            findings=findings or None,
            excluded=tuple((deployment, verdict.reason) for deployment, verdict in verdicts),
        )


def _breach(rule: JurisdictionRule, deployment: ModelConfig) -> str | None:
    """How `rule` is broken by sending to `deployment`, phrased as the rule; None if it is not."""
    if rule.allow is not None and not any(_matches(j, deployment) for j in rule.allow):
        return f"allows only [{', '.join(rule.allow)}]"
    if any(_matches(j, deployment) for j in rule.deny):
        return f"denies [{', '.join(rule.deny)}]"
    return None


def _matches(jurisdiction: str, deployment: ModelConfig) -> bool:
    """The declared jurisdiction is the truth, with one safeguard: a remote deployment left at
    the default (`local`) without saying so must not pass a local-only rule."""
    wanted = jurisdiction.casefold()
    if wanted == LOCAL:
        return _declared_local(deployment)
    return wanted == deployment.jurisdiction.casefold()


def _declared_local(deployment: ModelConfig) -> bool:
    if deployment.jurisdiction.casefold() != LOCAL:
        return False
    return deployment.is_local or "jurisdiction" in deployment.model_fields_set


def _whereabouts(deployment: ModelConfig) -> str:
    if deployment.jurisdiction.casefold() != LOCAL:
        return f"is in {deployment.jurisdiction}"
    return "is local" if _declared_local(deployment) else "is remote, with no jurisdiction set"
