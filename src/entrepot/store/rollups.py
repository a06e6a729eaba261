"""What the operator console reads: usage over time from the hourly rollups (migration 0010),
and the ledger itself a page at a time.

Every summary reads `usage_hourly` or `usage_hourly_egress`, never the ledger: a few rows per
hour, however many requests it had, so a page costs the same at a thousand records or a
hundred million. Only the requests list reads `usage_records`, by keyset (newest first, from a
`(created_at, id)` cursor) so that page 1,000 costs what page 1 does, and it reads metadata
only: the ledger holds no content, and the console shows none.

Costs stay per currency (nanos, as the ledger keeps them), never added across currencies.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, and_, case, func, or_, select

from entrepot.store.tables import (
    LATENCY_BOUNDS_MS,
    usage_hourly,
    usage_hourly_egress,
    usage_records,
)

Grain = Literal["hour", "day", "month"]
Split = Literal["model", "key", "team", "endpoint", "jurisdiction", "data_class"]
# The hour is stored as "YYYY-MM-DD HH": a day or a month is a prefix of it.
_PREFIX = {"hour": 13, "day": 10, "month": 7}
_H = usage_hourly.c
_SPLIT = {
    "model": _H.model_alias,
    "key": _H.key_name,
    "team": _H.team,
    "endpoint": _H.endpoint,
    "jurisdiction": _H.jurisdiction,
    "data_class": _H.data_class,
}


def hour_of(moment: dt.datetime) -> str:
    """A moment's hour as the rollups spell it (UTC)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H")


@dataclass(frozen=True)
class Window:
    """From `since` (included) to `until` (excluded), whole UTC hours."""

    since: dt.datetime
    until: dt.datetime

    def where(self, hour: Any) -> ColumnElement[bool]:
        return and_(hour >= hour_of(self.since), hour < hour_of(self.until))


@dataclass(slots=True)
class Totals:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nanos: dict[str, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def merge(self, other: Totals) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        for currency, nanos in other.cost_nanos.items():
            self.cost_nanos[currency] = self.cost_nanos.get(currency, 0) + nanos

    def add(self, row: Any) -> None:
        self.requests += int(row.requests)
        self.errors += int(row.errors)
        self.prompt_tokens += int(row.prompt)
        self.completion_tokens += int(row.completion)
        if row.currency:
            self.cost_nanos[row.currency] = self.cost_nanos.get(row.currency, 0) + int(row.cost)


def _sums() -> list[Any]:
    return [
        func.sum(_H.requests).label("requests"),
        func.sum(case((_H.status_class >= 4, _H.requests), else_=0)).label("errors"),
        func.sum(_H.prompt_tokens).label("prompt"),
        func.sum(_H.completion_tokens).label("completion"),
        func.sum(_H.cost_nanos).label("cost"),
    ]


def series(
    engine: Engine, window: Window, grain: Grain, split: Split
) -> dict[str, dict[str, Totals]]:
    """Totals per time bucket (hour, day or month) and per value of `split`: {bucket: {value:
    totals}}, buckets in order. A missing value (no key, no team) is ""."""
    bucket = func.substr(_H.hour, 1, _PREFIX[grain]).label("bucket")
    group = _SPLIT[split].label("grp")
    query = (
        select(bucket, group, _H.currency, *_sums())
        .where(window.where(_H.hour))
        .group_by(bucket, group, _H.currency)
        .order_by(bucket)
    )
    out: dict[str, dict[str, Totals]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            out.setdefault(row.bucket, {}).setdefault(row.grp, Totals()).add(row)
    return out


def collapse(buckets: dict[str, dict[str, Totals]]) -> dict[str, Totals]:
    """A series' totals per group over all its buckets: what `totals_by` would read again."""
    out: dict[str, Totals] = {}
    for groups in buckets.values():
        for name, totals in groups.items():
            out.setdefault(name, Totals()).merge(totals)
    return out


def totals_by(engine: Engine, window: Window, split: Split) -> dict[str, Totals]:
    """Totals over the window per value of `split` (top keys, spend per team, …)."""
    group = _SPLIT[split].label("grp")
    query = (
        select(group, _H.currency, *_sums())
        .where(window.where(_H.hour))
        .group_by(group, _H.currency)
    )
    out: dict[str, Totals] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            out.setdefault(row.grp, Totals()).add(row)
    return out


@dataclass(frozen=True)
class Latency:
    """One model's latency and time to first token over a window: mean, and p50/p95 estimated
    from the cumulative histogram (linear within a bucket; `math.inf` past the last bound)."""

    model: str
    requests: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    ttft_requests: int
    ttft_mean_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None


def quantile(cumulative: Sequence[int], total: int, q: float) -> float:
    """The q-quantile of a histogram whose i-th count is how many were at most
    `LATENCY_BOUNDS_MS[i]`, of `total` in all; interpolated within the bucket it falls in."""
    rank = q * total
    below, lower = 0, 0.0
    for bound, count in zip(LATENCY_BOUNDS_MS, cumulative, strict=True):
        if count >= rank and count > below:
            return lower + (bound - lower) * (rank - below) / (count - below)
        below, lower = count, float(bound)
    return math.inf


def latency_by_model(engine: Engine, window: Window) -> list[Latency]:
    """Per model, over successful requests (an error's latency is how fast it failed)."""
    latency = [func.sum(_H[f"latency_le_{b}"]) for b in LATENCY_BOUNDS_MS]
    ttft = [func.sum(_H[f"ttft_le_{b}"]) for b in LATENCY_BOUNDS_MS]
    query = (
        select(
            _H.model_alias,
            func.sum(_H.requests),
            func.sum(_H.latency_ms),
            func.sum(_H.ttft_requests),
            func.sum(_H.ttft_ms),
            *latency,
            *ttft,
        )
        .where(window.where(_H.hour), _H.status_class == 2)
        .group_by(_H.model_alias)
        .order_by(_H.model_alias)
    )
    n = len(LATENCY_BOUNDS_MS)
    out = []
    with engine.connect() as conn:
        for model, requests, total_ms, ttft_n, ttft_ms, *hist in conn.execute(query):
            requests, ttft_n = int(requests), int(ttft_n)
            lat, first = [int(v) for v in hist[:n]], [int(v) for v in hist[n:]]
            out.append(
                Latency(
                    model=model,
                    requests=requests,
                    mean_ms=int(total_ms) / requests,
                    p50_ms=quantile(lat, requests, 0.5),
                    p95_ms=quantile(lat, requests, 0.95),
                    ttft_requests=ttft_n,
                    ttft_mean_ms=int(ttft_ms) / ttft_n if ttft_n else None,
                    ttft_p50_ms=quantile(first, ttft_n, 0.5) if ttft_n else None,
                    ttft_p95_ms=quantile(first, ttft_n, 0.95) if ttft_n else None,
                )
            )
    return out


@dataclass(frozen=True)
class Egress:
    outcome: str  # "denied" or "rerouted"
    reason: str  # the rule that fired, and the deployment it kept the request from
    data_class: str
    model: str
    requests: int


def egress_events(engine: Engine, window: Window, limit: int = 100) -> list[Egress]:
    """The requests the egress rules kept from a deployment, per outcome, rule, data class and
    model, most frequent first."""
    e = usage_hourly_egress.c
    total = func.sum(e.requests).label("requests")
    query = (
        select(e.outcome, e.reason, e.data_class, e.model_alias, total)
        .where(window.where(e.hour))
        .group_by(e.outcome, e.reason, e.data_class, e.model_alias)
        .order_by(total.desc(), e.reason)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [Egress(*row[:4], int(row[4])) for row in conn.execute(query)]


def egress_series(engine: Engine, window: Window, grain: Grain) -> dict[str, dict[str, int]]:
    """Denied and rerouted requests per time bucket: {bucket: {outcome: requests}}."""
    e = usage_hourly_egress.c
    bucket = func.substr(e.hour, 1, _PREFIX[grain]).label("bucket")
    query = (
        select(bucket, e.outcome, func.sum(e.requests))
        .where(window.where(e.hour))
        .group_by(bucket, e.outcome)
        .order_by(bucket)
    )
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for when, outcome, requests in conn.execute(query):
            out.setdefault(when, {})[outcome] = int(requests)
    return out


# The requests list: what a row shows. No content column exists in the ledger; `findings` are
# kinds and counts, and attempts name deployments and rules — still left to the admin API.
LEDGER_COLUMNS = (
    "id",
    "created_at",
    "request_id",
    "key_name",
    "team",
    "model_alias",
    "deployment",
    "jurisdiction",
    "endpoint",
    "stream",
    "status",
    "error_type",
    "data_class",
    "prompt_tokens",
    "completion_tokens",
    "cost_nanos",
    "currency",
    "latency_ms",
    "ttft_ms",
    "cache_hit",
    "task",
)


@dataclass(frozen=True)
class LedgerFilter:
    key_id: int | None = None
    model: str | None = None
    status_class: int | None = None  # 2 for 2xx, 4 for 4xx, 5 for 5xx
    data_class: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        t = usage_records.c
        found: list[ColumnElement[bool]] = []
        if self.key_id is not None:
            found.append(t.key_id == self.key_id)
        if self.model:
            found.append(t.model_alias == self.model)
        if self.status_class is not None:
            low = self.status_class * 100
            found.append(and_(t.status >= low, t.status < low + 100))
        if self.data_class:
            found.append(t.data_class == self.data_class)
        if self.since is not None:
            found.append(t.created_at >= self.since)
        if self.until is not None:
            found.append(t.created_at < self.until)
        return found


@dataclass(frozen=True)
class Cursor:
    """Where a page of the requests list ends: the next starts just past it."""

    created_at: dt.datetime
    id: int

    def token(self) -> str:
        return f"{self.created_at.isoformat()}_{self.id}"

    @classmethod
    def parse(cls, token: str) -> Cursor | None:
        """None for a token this code did not write (a mangled URL starts from the top)."""
        moment, _, ident = token.rpartition("_")
        try:
            return cls(dt.datetime.fromisoformat(moment), int(ident))
        except ValueError:
            return None


def ledger_page(
    engine: Engine, filters: LedgerFilter, after: Cursor | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page of records, newest first, and the cursor of the next page (None on the last)."""
    t = usage_records.c
    conditions = filters.conditions()
    if after is not None:
        moment = after.created_at.astimezone(dt.UTC)
        conditions.append(or_(t.created_at < moment, and_(t.created_at == moment, t.id < after.id)))
    query = (
        select(*(t[name] for name in LEDGER_COLUMNS))
        .where(*conditions)
        .order_by(t.created_at.desc(), t.id.desc())
        .limit(limit + 1)
    )
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(query).mappings()]
    for row in rows:
        if row["created_at"].tzinfo is None:  # SQLite: naive UTC
            row["created_at"] = row["created_at"].replace(tzinfo=dt.UTC)
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, Cursor(rows[-1]["created_at"], rows[-1]["id"])
