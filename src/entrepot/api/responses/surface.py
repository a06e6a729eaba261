"""The Responses API surface: a request becomes one `ResponsesCall`, which carries the internal
chat body through the pipeline and writes its answer back as a Response object (or a stream of
events), stored for its owner unless the client said `store: false`."""

from __future__ import annotations

import time

import orjson

from entrepot.api.asgi import error_body
from entrepot.api.gateway import Gateway
from entrepot.api.responses.answer import from_answer, skeleton
from entrepot.api.responses.events import ResponseEvents
from entrepot.api.responses.items import new_id, to_messages
from entrepot.api.responses.request import ResponsesRequest, parse_request
from entrepot.api.responses.stored import Archive, archive, owner_of
from entrepot.api.streaming import Encoder
from entrepot.exceptions import GatewayError, NotFoundError
from entrepot.types import JSON, ApiKey


class ResponsesCall:
    """One request, with the id of the Response it will become. A cached answer replayed is a
    response of its own too: new id, new item ids, stored on its own."""

    __slots__ = ("archive", "body", "created_at", "id", "inputs", "owner", "request")
    native = None

    def __init__(
        self, archive: Archive, owner: str, request: ResponsesRequest, context: list[JSON]
    ) -> None:
        self.archive = archive
        self.owner = owner
        self.request = request
        self.id = new_id("resp")
        self.created_at = int(time.time())
        messages = to_messages(request.instructions, context, request.input)
        self.body: JSON = {**request.internal, "messages": messages}
        self.inputs = context + request.input  # the whole conversation this response answers

    def _skeleton(self) -> JSON:
        return skeleton(self.request.settings, self.id, self.created_at)

    async def _keep(self, response: JSON) -> None:
        if self.request.store:
            await self.archive.keep(self.owner, response, self.inputs)

    async def answer(self, result: JSON) -> bytes:
        response = from_answer(self._skeleton(), result)
        await self._keep(response)
        return orjson.dumps(response)

    async def replay(self, cached: bytes) -> bytes:
        return await self.answer(orjson.loads(cached))

    def events(self) -> Encoder:
        return ResponseEvents(self._skeleton(), self._keep)


class ResponsesSurface:
    async def translate(
        self, gateway: Gateway, key: ApiKey | None, parsed: object
    ) -> ResponsesCall:
        """A `previous_response_id` that is unknown, expired or another key's fails here, before
        anything is admitted or billed."""
        request = parse_request(parsed)
        owner, kept = owner_of(key), archive(gateway)
        context: list[JSON] = []
        if request.previous_response_id is not None:
            previous = await kept.lookup(owner, request.previous_response_id)
            if previous is None:
                raise NotFoundError(
                    f"Previous response with id {request.previous_response_id[:64]!r} not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            context = previous.input_items + previous.response["output"]
        return ResponsesCall(kept, owner, request, context)

    def error(self, exc: GatewayError) -> tuple[int, bytes]:
        return exc.status_code, orjson.dumps(error_body(exc))


RESPONSES_SURFACE = ResponsesSurface()
