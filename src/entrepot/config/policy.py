"""`policy:` and `teams:` — the data classes, where data of each class (or each team's data) may
be processed, and the detector that raises a request's class when it finds personal data or
secrets."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from entrepot.config.limits import Limits
from entrepot.config.strict import Strict


class JurisdictionRule(Strict):
    """Where data of one class (or one team's data) may be processed. `allow: null` = anywhere."""

    allow: list[str] | None = None
    deny: list[str] = Field(default_factory=list)


class TeamConfig(Strict):
    data_class: str | None = None
    rule: JurisdictionRule = JurisdictionRule()
    limits: Limits = Limits()


DETECTOR_KINDS = ("email", "phone", "iban", "card", "national_id", "api_key", "private_key")


class DetectorConfig(Strict):
    enabled: bool = True
    kinds: list[str] = Field(default_factory=lambda: list(DETECTOR_KINDS))
    custom: dict[str, str] = Field(default_factory=dict)
    raises_to: str = "confidential"

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        unknown = sorted(set(kinds) - set(DETECTOR_KINDS))
        if unknown:
            raise ValueError(f"unknown detector kinds {unknown}; known: {list(DETECTOR_KINDS)}")
        return kinds


class PolicyConfig(Strict):
    """Data classes in ascending sensitivity, and where each may go."""

    classes: list[str] = Field(default_factory=lambda: ["public", "internal", "confidential"])
    default_class: str = "internal"
    rules: dict[str, JurisdictionRule] = Field(
        default_factory=lambda: {"confidential": JurisdictionRule(allow=["local"])}
    )
    detector: DetectorConfig = DetectorConfig()
    reroute_alias: str | None = None
    offline: bool = False

    @model_validator(mode="after")
    def _known_classes(self) -> PolicyConfig:
        named = [self.default_class, self.detector.raises_to, *self.rules]
        unknown = sorted({c for c in named if c not in self.classes})
        if unknown:
            raise ValueError(f"unknown data classes {unknown}; declared: {self.classes}")
        return self
