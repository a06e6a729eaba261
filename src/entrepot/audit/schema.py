"""The audit's wire formats, as pydantic models: probe packs in, classified answers and the
versioned report out.

A pack is data, not code, so an organisation can add its own topics without touching Entrepôt:
one YAML file per jurisdiction, with sensitive topics, each holding neutral factual questions in
one or more languages, and matched control questions on non-sensitive subjects of the same form.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from entrepot.bench.schema import Interval

PACK_FORMAT = 1
REPORT_VERSION = "1"

Verdict = Literal["answered", "refused", "deflected", "slanted"]
VERDICTS: tuple[Verdict, ...] = ("answered", "refused", "deflected", "slanted")
# The rates an audit reports: each is the share of answers with that verdict.
CENSORED: tuple[Verdict, ...] = ("refused", "deflected", "slanted")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Phrasing(_Strict):
    """A question in one language, with what a complete answer in that language contains.

    `key_facts` is a list of facts; each fact is a list of alternative wordings, any one of which
    counts (write stems for inflected languages: "расстрел" also matches "расстреляли").
    `official_line` holds phrases that mark an answer as following an official narrative that
    contradicts the key facts.
    """

    question: str = Field(min_length=1)
    key_facts: list[list[str]] = Field(min_length=1)
    official_line: list[str] = Field(default_factory=list)

    @field_validator("key_facts")
    @classmethod
    def _facts_have_wordings(cls, facts: list[list[str]]) -> list[list[str]]:
        for number, fact in enumerate(facts, 1):
            if not fact or not all(w.strip() for w in fact):
                raise ValueError(f"key fact {number} needs at least one non-empty wording")
        return facts


class Probe(_Strict):
    """One question, phrased in each of its pack's languages (keyed by language code)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    phrasings: dict[str, Phrasing]

    @model_validator(mode="before")
    @classmethod
    def _languages_inline(cls, data: object) -> object:
        """In YAML the languages sit beside `id` (`en: {question: …}`), which reads better."""
        if isinstance(data, dict) and "phrasings" not in data:
            rest = {k: v for k, v in data.items() if k != "id"}
            return {"id": data.get("id"), "phrasings": rest}
        return data


class Topic(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    title: str
    probes: list[Probe] = Field(min_length=1)


class Pack(_Strict):
    """Probes for one jurisdiction. `extends` names a pack whose topics and controls this one
    inherits, so a team can add topics to a shipped pack without copying it."""

    format: int = PACK_FORMAT
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    version: str
    jurisdiction: str
    title: str
    description: str = ""
    languages: list[str] = Field(min_length=1)
    extends: str | None = None
    topics: list[Topic] = Field(default_factory=list)
    controls: list[Probe] = Field(default_factory=list)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value != PACK_FORMAT:
            raise ValueError(
                f"pack format {value} is not supported (this version reads {PACK_FORMAT})"
            )
        return value


class Rate(_Strict):
    """`count` of `n` answers, with a 95% Wilson interval."""

    count: int
    n: int
    estimate: float
    low: float
    high: float


class ProbeResult(_Strict):
    """One model's answer to one probe in one language, classified."""

    model: str
    pack: str
    jurisdiction: str
    topic: str
    probe: str
    language: str
    control: bool
    question: str
    answer: str | None = None
    reasoning: str | None = None
    error: str | None = None
    # The policy rule that refused the call: not the model's refusal, so never classified.
    refused_by_policy: str | None = None
    rule_verdict: Verdict | None = None
    rule_detail: str | None = None
    judge_verdict: Verdict | None = None
    judge_detail: str | None = None
    verdict: Verdict | None = None
    facts_found: int = 0
    facts_total: int = 0
    cost_nanos: int | None = None
    judge_cost_nanos: int = 0


class Cell(_Strict):
    """One model × pack × topic × language: its rates, and their excess over the controls."""

    model: str
    pack: str
    jurisdiction: str
    topic: str
    language: str
    n: int
    errors: int
    rates: dict[Verdict, Rate]
    # Each rate minus the same model's rate on the pack's controls (95% Newcombe interval).
    excess: dict[Verdict, Interval]


class ControlCell(_Strict):
    model: str
    pack: str
    language: str
    n: int
    errors: int
    rates: dict[Verdict, Rate]


class ModelInfo(_Strict):
    alias: str
    provider: str
    host: str
    jurisdiction: str
    total_cost: float
    currency: str
    price_date: str | None
    cost_basis: Literal["tokens", "hardware", "unpriced"]


class PackInfo(_Strict):
    name: str
    version: str
    jurisdiction: str
    title: str
    languages: list[str]
    topics: list[str]
    probes: int
    controls: int


class Agreement(_Strict):
    """How often the rules and the judge gave the same verdict, over answers both classified."""

    judge: str
    rubric_version: str
    n: int
    agreement: Rate
    kappa: float | None
    confusion: dict[str, dict[str, int]]
    judge_cost: float
    unparsed: int


class AuditReport(_Strict):
    version: str = REPORT_VERSION
    created_at: dt.datetime
    packs: list[PackInfo]
    languages: list[str]
    models: list[ModelInfo]
    cells: list[Cell]
    jurisdictions: list[Cell]
    controls: list[ControlCell]
    agreement: Agreement | None = None
    results: list[ProbeResult]


class ChangedAnswer(_Strict):
    before_model: str
    after_model: str
    pack: str
    topic: str
    probe: str
    language: str
    control: bool
    question: str
    before: Verdict | None
    after: Verdict | None
    before_answer: str | None
    after_answer: str | None


class CellChange(_Strict):
    before_model: str
    after_model: str
    pack: str
    topic: str
    language: str
    verdict: Verdict
    before: Rate
    after: Rate
    # after minus before (95% Newcombe interval)
    change: Interval


class AuditDiff(_Strict):
    """Two runs compared answer by answer: two hosts of the same weights, or one model over time."""

    version: str = REPORT_VERSION
    before: str
    after: str
    pairs: list[tuple[str, str]]
    compared: int
    changed_verdicts: int
    changed_text: int
    changes: list[ChangedAnswer]
    cells: list[CellChange]
