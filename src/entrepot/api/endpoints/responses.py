"""OpenAI's Responses API: `POST /v1/responses` (complete or streamed) through the pipeline, and
the stored responses — `GET` and `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`
— each readable only by the key that created it."""

from __future__ import annotations

from collections.abc import Awaitable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from entrepot.api.endpoints.http import serve
from entrepot.api.gateway import Gateway
from entrepot.api.pipeline import Endpoint
from entrepot.api.responses.stored import archive, owner_of
from entrepot.api.responses.surface import RESPONSES_SURFACE
from entrepot.api.validation import validate_chat
from entrepot.exceptions import InvalidRequestError
from entrepot.store.responses import StoredResponse
from entrepot.types import JSON

RESPONSES = Endpoint("responses", validate_chat, "chat", "stream_chat", "chat.completion")
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


def handle(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
    return serve(gateway, RESPONSES, RESPONSES_SURFACE, scope, receive, send)


def _json(data: object) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


async def _stored(request: Request) -> StoredResponse:
    gateway: Gateway = request.app.state.gateway
    key = await gateway.keys.authenticate(request.headers)
    return await archive(gateway).find(owner_of(key), request.path_params["response_id"])


async def retrieve(request: Request) -> Response:
    if request.query_params.get("stream", "false").lower() != "false":
        raise InvalidRequestError("streaming a stored response is not supported", param="stream")
    return _json((await _stored(request)).response)


async def delete(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    key = await gateway.keys.authenticate(request.headers)
    response_id = request.path_params["response_id"]
    await archive(gateway).forget(owner_of(key), response_id)
    return _json({"id": response_id, "object": "response", "deleted": True})


async def input_items(request: Request) -> Response:
    """OpenAI's list shape: newest first unless `order=asc`, `limit` items after `after`."""
    query = request.query_params
    limit = query.get("limit", str(DEFAULT_LIMIT))
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
        raise InvalidRequestError(f"limit must be an integer from 1 to {MAX_LIMIT}", param="limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("order must be asc or desc", param="order")
    items = (await _stored(request)).input_items
    if order == "desc":
        items = items[::-1]
    after = query.get("after")
    if after is not None:
        position = next((i for i, item in enumerate(items) if item.get("id") == after), None)
        if position is None:
            raise InvalidRequestError(
                f"no input item {after[:64]!r} in this response", param="after"
            )
        items = items[position + 1 :]
    page: list[JSON] = items[: int(limit)]
    return _json(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > len(page),
        }
    )
