"""Prometheus metrics, fed from usage records so /metrics and the ledger never disagree.

Counted in plain dictionaries and turned into metric families only when scraped: prometheus
client's own counters take a lock on every increment, and the seven updates each request makes
cost more than the rest of its billing. Records are observed and scraped on the event loop, so the
dictionaries need no lock of their own.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from entrepot.types import UsageRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_BUCKET_BOUNDS_MS = tuple(bound * 1000 for bound in LATENCY_BUCKETS)
_BUCKET_LABELS = (*(str(float(bound)) for bound in LATENCY_BUCKETS), "+Inf")

Labels = tuple[str, ...]


@dataclass(slots=True)
class _Histogram:
    """Per-bucket counts (the last one past every bound) and the sum, in milliseconds."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    sum_ms: int = 0

    def observe(self, value_ms: int) -> None:
        self.counts[bisect.bisect_left(_BUCKET_BOUNDS_MS, value_ms)] += 1
        self.sum_ms += value_ms

    def buckets(self) -> list[tuple[str, float]]:
        cumulative, total = [], 0
        for bound, count in zip(_BUCKET_LABELS, self.counts, strict=True):
            total += count
            cumulative.append((bound, float(total)))
        return cumulative


class GatewayMetrics(Collector):
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests: defaultdict[Labels, int] = defaultdict(int)
        self._latency: defaultdict[Labels, _Histogram] = defaultdict(_Histogram)
        self._ttft: defaultdict[Labels, _Histogram] = defaultdict(_Histogram)
        self._tokens: defaultdict[Labels, int] = defaultdict(int)
        self._cost_nanos: defaultdict[Labels, int] = defaultdict(int)
        self._refusals: defaultdict[Labels, int] = defaultdict(int)
        # What the ledger writer has not yet written to the store (`LedgerWriter.backlog`).
        self.ledger_backlog: Callable[[], Mapping[str, int]] | None = None
        self.registry.register(self)

    def observe(self, record: UsageRecord) -> None:
        # Only configured aliases become label values: a client sending random model names
        # must not be able to grow the metric set without bound.
        model = (record.model_alias or "-") if record.deployment else "-"
        self._requests[(model, record.endpoint, str(record.status))] += 1
        self._latency[(model, record.endpoint)].observe(record.latency_ms)
        if record.ttft_ms is not None:
            self._ttft[(model,)].observe(record.ttft_ms)
        if record.prompt_tokens:
            self._tokens[(model, "prompt")] += record.prompt_tokens
        if record.completion_tokens:
            self._tokens[(model, "completion")] += record.completion_tokens
        if record.cost_nanos and record.currency:
            self._cost_nanos[(model, record.currency)] += record.cost_nanos
        if record.refused_by_model:
            self._count_refusals(model, record)

    def outcomes(self) -> dict[str, tuple[int, int]]:
        """Per model alias since this process started: (requests, those failed with a 5xx),
        for the console's live error rate."""
        totals: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
        for (model, _, status), count in self._requests.items():
            totals[model][0] += count
            if status.startswith("5"):
                totals[model][1] += count
        return {model: (done, failed) for model, (done, failed) in totals.items()}

    def _count_refusals(self, model: str, record: UsageRecord) -> None:
        """Per alias and deployment (a configured name): which model refused, not only where."""
        for attempt in record.attempts or ():
            if attempt.get("outcome") == "refused":
                self._refusals[(model, str(attempt.get("deployment")))] += 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "entrepot_requests", "Client requests", labels=("model", "endpoint", "status")
        )
        for labels, count in self._requests.items():
            requests.add_metric(labels, count)
        yield requests
        yield _histograms(
            "entrepot_request_duration_seconds",
            "Time from request to last byte",
            ("model", "endpoint"),
            self._latency,
        )
        yield _histograms(
            "entrepot_time_to_first_token_seconds",
            "Time to the first streamed token",
            ("model",),
            self._ttft,
        )
        tokens = CounterMetricFamily(
            "entrepot_tokens", "Tokens processed", labels=("model", "kind")
        )
        for labels, count in self._tokens.items():
            tokens.add_metric(labels, count)
        yield tokens
        cost = CounterMetricFamily(
            "entrepot_cost", "Cost of requests", labels=("model", "currency")
        )
        for labels, nanos in self._cost_nanos.items():
            cost.add_metric(labels, nanos / 1e9)
        yield cost
        refusals = CounterMetricFamily(
            "entrepot_refusals",
            "Answers the model refused (a route's on_refusal: fallback)",
            labels=("model", "deployment"),
        )
        for labels, count in self._refusals.items():
            refusals.add_metric(labels, count)
        yield refusals
        if self.ledger_backlog is not None:
            yield from _ledger_backlog(self.ledger_backlog())


def _ledger_backlog(backlog: Mapping[str, int]) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "entrepot_ledger_spooled_records",
        "Usage records waiting in the local spool for the store",
        value=backlog["spooled_records"],
    )
    yield GaugeMetricFamily(
        "entrepot_ledger_spooled_bytes",
        "Size of the local spool of usage records",
        value=backlog["spooled_bytes"],
    )
    yield GaugeMetricFamily(
        "entrepot_ledger_quarantined_records",
        "Usage records the store rejected, kept in the quarantine file",
        value=backlog["quarantined_records"],
    )
    yield CounterMetricFamily(
        "entrepot_ledger_dropped_records",
        "Usage records lost because neither the store nor the spool would take them",
        value=backlog["dropped_records"],
    )


def _histograms(
    name: str, documentation: str, label_names: Labels, series: dict[Labels, _Histogram]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=label_names)
    for labels, histogram in series.items():
        family.add_metric(list(labels), histogram.buckets(), histogram.sum_ms / 1000)
    return family
