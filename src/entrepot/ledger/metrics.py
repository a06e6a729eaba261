"""Prometheus metrics, fed from usage records so /metrics and the ledger never disagree."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from entrepot.ledger.records import UsageRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("model", "endpoint", "status")
        self.requests = Counter(
            "entrepot_requests", "Client requests", labels, registry=self.registry
        )
        self.latency = Histogram(
            "entrepot_request_duration_seconds",
            "Time from request to last byte",
            ("model", "endpoint"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "entrepot_time_to_first_token_seconds",
            "Time to the first streamed token",
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "entrepot_tokens", "Tokens processed", ("model", "kind"), registry=self.registry
        )
        self.cost = Counter(
            "entrepot_cost", "Cost of requests", ("model", "currency"), registry=self.registry
        )
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}

    def _labelled(self, metric: MetricWrapperBase, *values: str) -> Any:
        """`metric.labels(...)`, remembered: the lookup and its lock cost more than the
        increment itself, and it runs several times on every request."""
        child = self._children.get((metric, values))
        if child is None:
            child = self._children[(metric, values)] = metric.labels(*values)
        return child

    def observe(self, record: UsageRecord) -> None:
        # Only configured aliases become label values: a client sending random model names
        # must not be able to grow the metric set without bound.
        model = (record.model_alias or "-") if record.deployment else "-"
        self._labelled(self.requests, model, record.endpoint, str(record.status)).inc()
        self._labelled(self.latency, model, record.endpoint).observe(record.latency_ms / 1000)
        if record.ttft_ms is not None:
            self._labelled(self.ttft, model).observe(record.ttft_ms / 1000)
        if record.prompt_tokens:
            self._labelled(self.tokens, model, "prompt").inc(record.prompt_tokens)
        if record.completion_tokens:
            self._labelled(self.tokens, model, "completion").inc(record.completion_tokens)
        if record.cost_nanos and record.currency:
            self._labelled(self.cost, model, record.currency).inc(record.cost_nanos / 1e9)
