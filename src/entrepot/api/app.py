"""The ASGI application: routes, error handlers, and the lifespan that starts the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from entrepot import __version__
from entrepot.api import admin, errors, inference
from entrepot.api.gateway import Gateway
from entrepot.exceptions import GatewayError
from entrepot.policy.access import authorize_model, visible_models


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
    key = await gateway.keys.authenticate(request)
    aliases = visible_models(key, gateway.routing.aliases)
    return _json({"object": "list", "data": [_model_entry(gateway, a) for a in aliases]})


async def get_model(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    key = await gateway.keys.authenticate(request)
    alias = request.path_params["model"]
    authorize_model(key, alias)
    return _json(_model_entry(gateway, alias))


async def health(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    return _json({"status": "ok", "version": __version__, "models": len(gateway.routing.aliases)})


async def metrics(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(gateway: Gateway) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    routes = [
        Route("/v1/chat/completions", inference.chat_completions, methods=["POST"]),
        Route("/v1/completions", inference.completions, methods=["POST"]),
        Route("/v1/embeddings", inference.embeddings, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/keys", admin.list_keys, methods=["GET"]),
        Route("/admin/keys", admin.create_key, methods=["POST"]),
        Route("/admin/keys/{ref}", admin.revoke_key, methods=["DELETE"]),
        Route("/admin/usage", admin.usage_summary, methods=["GET"]),
        Route("/admin/route/explain", admin.explain, methods=["POST"]),
    ]
    middleware = []
    if gateway.config.server.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=gateway.config.server.cors_origins,
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["authorization", "content-type"],
            )
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            GatewayError: errors.gateway_error_handler,
            404: errors.not_found_handler,
            405: errors.method_not_allowed_handler,
            Exception: errors.unexpected_error_handler,
        },
    )
    app.state.gateway = gateway
    return app
