"""/metrics text from observed records: bucket edges, sums and costs as Prometheus reads them."""

from __future__ import annotations

from prometheus_client import generate_latest

from entrepot.ledger.metrics import GatewayMetrics
from entrepot.types import UsageRecord


def exposed(*records: UsageRecord) -> set[str]:
    metrics = GatewayMetrics()
    for record in records:
        metrics.observe(record)
    return set(generate_latest(metrics.registry).decode().splitlines())


def served(latency_ms: int, **fields: object) -> UsageRecord:
    return UsageRecord(
        request_id=f"req-{latency_ms}",
        endpoint="chat",
        model_alias="m",
        deployment="d",
        latency_ms=latency_ms,
        **fields,  # type: ignore[arg-type]
    )


def test_a_latency_on_a_bucket_edge_counts_in_that_bucket() -> None:
    lines = exposed(served(5), served(6), served(400_000))
    bucket = 'entrepot_request_duration_seconds_bucket{endpoint="chat",le="%s",model="m"} %s'
    assert bucket % ("0.005", "1.0") in lines
    assert bucket % ("0.01", "2.0") in lines
    assert bucket % ("300.0", "2.0") in lines
    assert bucket % ("+Inf", "3.0") in lines
    assert 'entrepot_request_duration_seconds_sum{endpoint="chat",model="m"} 400.011' in lines
    assert 'entrepot_request_duration_seconds_count{endpoint="chat",model="m"} 3.0' in lines


def test_costs_add_up_exactly_per_currency_and_ttft_only_when_streamed() -> None:
    lines = exposed(
        *(served(1, cost_nanos=100_000_000, currency="USD") for _ in range(3)),
        served(2, cost_nanos=7, currency="CNY", ttft_ms=30),
    )
    assert 'entrepot_cost_total{currency="USD",model="m"} 0.3' in lines
    assert 'entrepot_cost_total{currency="CNY",model="m"} 7e-09' in lines
    assert 'entrepot_time_to_first_token_seconds_count{model="m"} 1.0' in lines
    assert 'entrepot_requests_total{endpoint="chat",model="m",status="200"} 4.0' in lines
