"""The bench's wire formats, as pydantic models: task items in, per-item results and the run
report out. The report's JSON is versioned (`REPORT_VERSION`) so CI gates and dashboards can rely
on it."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# 2: a model whose every call failed has no score (null) and names its top error; latency and
# queue wait are reported apart.
REPORT_VERSION = "2"

GraderKind = Literal[
    "exact",
    "normalised",
    "contains",
    "regex",
    "numeric",
    "choice",
    "json",
    "python",
    "similarity",
    "judge",
    "refusal",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GraderSpec(_Strict):
    """How one item is scored (0.0–1.0). Fields not used by a kind are ignored by it.

    - exact / normalised: answer equals `expected` (normalised: case, whitespace, punctuation)
    - contains: every string of `expected` (str or list) appears; `regex`: `pattern` matches
    - numeric: the last number in the answer is within `tolerance` (absolute) or
      `relative_tolerance` of `expected`
    - choice: the chosen letter (A–Z) equals `expected`
    - json: the answer parses as JSON (fenced code allowed), validates against `schema` if given,
      and each of `fields` equals the value in `expected`
    - python: `function` ("module:callable") gets (answer, item) and returns a float or bool
    - similarity: cosine similarity of embeddings ≥ `threshold` (needs an embedding model)
    - judge: a configured model grades against `rubric`; its cost is reported separately
    - refusal: scores 1.0 when the answer refuses (for probes that should be refused), or with
      `expect_refusal: false`, when it does not
    """

    kind: GraderKind = "normalised"
    pattern: str | None = None
    tolerance: float | None = None
    relative_tolerance: float | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    fields: list[str] | None = None
    function: str | None = None
    threshold: float = 0.8
    rubric: str | None = None
    judge_model: str | None = None
    expect_refusal: bool = True
    constraints: dict[str, Any] | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TaskItem(_Strict):
    """One question: either chat `messages`, or a `prompt` template filled from `variables`."""

    id: str
    task: str = "default"
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    expected: Any = None
    grader: GraderSpec = GraderSpec()
    tags: list[str] = Field(default_factory=list)
    max_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _has_input(self) -> TaskItem:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("an item needs exactly one of messages or prompt")
        return self

    def chat_messages(self) -> list[dict[str, Any]]:
        if self.messages is not None:
            return self.messages
        assert self.prompt is not None
        return [{"role": "user", "content": self.prompt.format(**self.variables)}]


class Grade(_Strict):
    score: float = Field(ge=0, le=1)
    detail: str | None = None
    judge_cost_nanos: int = 0


class ItemResult(_Strict):
    """One model's answer to one item (one repeat), graded."""

    item_id: str
    task: str
    model: str
    repeat: int = 0
    answer: str | None = None
    reasoning: str | None = None
    finish_reason: str | None = None
    score: float | None = None
    detail: str | None = None
    error: str | None = None
    # The policy rule that refused the call (egress rules, offline mode): neither an answer
    # nor the model's failure, so it is neither scored nor counted as an error.
    refused_by_policy: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nanos: int | None = None
    judge_cost_nanos: int = 0
    # The model's own time on this answer, from the request sent to the answer received; the
    # wait for a free slot of the model (or for `--rpm` pacing) before that is `queue_ms`.
    latency_ms: float = 0.0
    queue_ms: float = 0.0
    # When the model started on it (Unix time): busy time is the union of these spans, the same
    # whether the answer was asked in this run or reused from the cache.
    started_at: float | None = None
    cached: bool = False


class Interval(_Strict):
    estimate: float
    low: float
    high: float


class ModelSummary(_Strict):
    """One model's numbers. A failed call is an error, not a wrong answer: a model with no answer
    at all has no `score` (and is on no frontier); `top_error` is its most frequent error."""

    model: str
    items: int
    graded: int
    errors: int
    score: Interval | None
    total_cost: float
    cost_per_item: float
    cost_per_correct: float | None
    currency: str
    price_date: str | None
    cost_basis: Literal["tokens", "hardware", "unpriced"]
    latency_p50_ms: float
    latency_p95_ms: float
    queue_p50_ms: float = 0.0
    queue_p95_ms: float = 0.0
    top_error: str | None = None
    refused_by_policy: int = 0
    top_refusal: str | None = None
    prompt_tokens: int
    completion_tokens: int
    judge_cost: float = 0.0
    per_task: dict[str, Interval] = Field(default_factory=dict)
    on_frontier: bool = False


class Comparison(_Strict):
    model: str
    reference: str
    quality_ratio: Interval
    cost_ratio: float | None
    headline: str


class BenchReport(_Strict):
    version: str = REPORT_VERSION
    created_at: dt.datetime
    tasks: list[str]
    items: int
    repeats: int
    reference: str | None
    models: list[ModelSummary]
    comparisons: list[Comparison]
    results: list[ItemResult]
