"""The ASGI application: routes, error handlers, and the lifespan that starts the gateway."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from entrepot import __version__
from entrepot.api import admin, errors, openapi
from entrepot.api.console.routes import console_routes
from entrepot.api.endpoints import ROUTES, responses
from entrepot.api.gateway import Gateway
from entrepot.api.pipeline import DEPLOYMENT_HEADER
from entrepot.exceptions import GatewayError
from entrepot.policy.access import authorize_model, visible_models
from entrepot.policy.egress import CLASS_HEADER
from entrepot.routing import cache
from entrepot.routing.good_enough import TASK_HEADER

# Every request header the gateway reads, and the response headers a browser client may need,
# so that a configured origin can use the whole API, not only its plain form.
CORS_REQUEST_HEADERS = [
    "authorization",
    "content-type",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    CLASS_HEADER,
    cache.HEADER,
    TASK_HEADER,
]
CORS_RESPONSE_HEADERS = [
    "x-request-id",
    "retry-after",
    DEPLOYMENT_HEADER,
    cache.HEADER,
    *(
        f"x-ratelimit-{what}-{kind}"
        for what in ("limit", "remaining", "reset")
        for kind in ("requests", "tokens")
    ),
]


def _json(data: object) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _model_entry(gateway: Gateway, alias: str) -> dict[str, object]:
    config = gateway.routing.resolve(alias)[0].config
    return {
        "id": alias,
        "object": "model",
        "created": gateway.routing.created,
        "owned_by": f"{config.provider}@{config.jurisdiction}",
    }


async def list_models(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    key = await gateway.keys.authenticate(request.headers)
    aliases = visible_models(key, gateway.routing.aliases)
    return _json({"object": "list", "data": [_model_entry(gateway, a) for a in aliases]})


async def get_model(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    key = await gateway.keys.authenticate(request.headers)
    alias = request.path_params["model"]
    authorize_model(key, alias)
    return _json(_model_entry(gateway, alias))


async def health(request: Request) -> Response:
    """Liveness. It answers 200 while the gateway serves, degraded or not: when a database shared
    by every replica is down, a load balancer pulling them all would stop a service that still
    bills correctly (the ledger spools); `status` and `reasons` say what needs attention —
    `limits` while the Redis that keeps limits and budgets does not answer."""
    gateway: Gateway = request.app.state.gateway
    reasons = gateway.ledger.problems() + await gateway.limits_problems()
    return _json(
        {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "version": __version__,
            "models": len(gateway.routing.aliases),
            "ledger": gateway.ledger.backlog(),
        }
    )


async def metrics(request: Request) -> Response:
    """Model names, traffic and spend are the operator's business: with an admin key set (always
    the case off loopback), scraping needs it too."""
    gateway: Gateway = request.app.state.gateway
    if gateway.keys.admin_key is not None:
        gateway.keys.require_admin(request)
    return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)


class GatewayApp:
    """The ASGI entry point: inference requests go straight to their handler, everything else
    through Starlette (see `api/asgi.py` for why the hot path has no framework)."""

    def __init__(self, gateway: Gateway, routes: Starlette) -> None:
        self.gateway = gateway
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None:
            await self.routes(scope, receive, send)
        else:  # each answers other methods with a 405 in its own format
            await handler(self.gateway, scope, receive, send)


def create_app(gateway: Gateway) -> ASGIApp:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        # Everything built so far (modules, config, routing tables) lives as long as the process:
        # frozen, the collector stops re-walking it on every full collection under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await gateway.stop()

    routes = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/v1/responses/{response_id}", responses.retrieve, methods=["GET"]),
        Route("/v1/responses/{response_id}", responses.delete, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", responses.input_items, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi.serve, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/keys", admin.list_keys, methods=["GET"]),
        Route("/admin/keys", admin.create_key, methods=["POST"]),
        Route("/admin/keys/{ref}", admin.revoke_key, methods=["DELETE"]),
        Route("/admin/usage", admin.usage_summary, methods=["GET"]),
        Route("/admin/route/explain", admin.explain, methods=["POST"]),
        *console_routes(),
    ]
    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            GatewayError: errors.gateway_error_handler,
            404: errors.not_found_handler,
            405: errors.method_not_allowed_handler,
            Exception: errors.unexpected_error_handler,
        },
    )
    starlette.state.gateway = gateway
    app: ASGIApp = GatewayApp(gateway, starlette)
    if gateway.config.server.cors_origins:
        app = CORSMiddleware(
            app,
            allow_origins=gateway.config.server.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
        )
    return app
