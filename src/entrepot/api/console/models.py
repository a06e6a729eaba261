"""Models: every deployment with where it runs, under which licence, what it costs (its token
price and the date it was read, or for local hardware the hourly rate and its source), and how it
is doing right now (circuit, requests in flight, smoothed latency, errors since start).

The live figures come from the gateway's memory, not the ledger: this process's routing table
(circuit, latency the router balances by) and metrics (`GatewayMetrics.outcomes`, per alias)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import Response

from entrepot.api.console import charts, figures
from entrepot.api.console.pages import Page, PageContext
from entrepot.config import Price
from entrepot.ledger.hardware import HardwareRate, hourly_rate
from entrepot.routing.table import Deployment


@dataclass(frozen=True)
class ModelRow:
    deployment: Deployment
    price: Price | None
    hardware: HardwareRate | None
    circuit: str
    latency_ms: float | None
    requests: int
    failed: int

    @property
    def error_rate(self) -> float | None:
        return self.failed / self.requests if self.requests else None


def rows(ctx: PageContext) -> list[ModelRow]:
    outcomes = ctx.gateway.metrics.outcomes()
    result = []
    for deployment in ctx.gateway.routing.deployments:
        requests, failed = outcomes.get(deployment.alias, (0, 0))
        ewma = deployment.latency_ewma
        result.append(
            ModelRow(
                deployment=deployment,
                price=deployment.price,
                hardware=hourly_rate(deployment.config),
                circuit=deployment.breaker.state,
                latency_ms=None if ewma is None else ewma * 1000,
                requests=requests,
                failed=failed,
            )
        )
    return result


async def get(ctx: PageContext) -> Response:
    models = rows(ctx)
    measured = [(r.deployment.name, r.latency_ms) for r in models if r.latency_ms is not None]
    chart = (
        charts.bar_chart("Smoothed latency per deployment", measured, figures.latency)
        if measured
        else None
    )
    return ctx.render("models.html", models=models, chart=chart)


PAGE = Page(path="/models", title="Models", get=get)
