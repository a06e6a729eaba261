"""A surface is one wire format clients speak: OpenAI's chat completions, completions and
embeddings, OpenAI's Responses API, Anthropic's Messages API.

The pipeline (`api/pipeline.py`) speaks one internal format — OpenAI's chat completions (and
completions, embeddings) bodies, answers and chunks, which is also what every provider takes —
so policy, limits, routing, billing and the ledger run once, whichever door a request came in
by. A surface is the ingress adapter around it, the mirror image of a provider: it translates a
request into the internal body, and the answer, each streamed chunk and each error back into its
own format. OpenAI's formats are the internal ones, so their surface translates nothing.

A request may also carry its `native` body: a deployment whose provider speaks the surface's
own protocol (an Anthropic upstream behind the Messages API) is sent that body as it came,
rather than a lossy round trip through the internal format.
"""

from __future__ import annotations

from typing import Protocol

from entrepot.api.gateway import Gateway
from entrepot.api.streaming import Encoder
from entrepot.exceptions import GatewayError
from entrepot.types import JSON, ApiKey


class Translated(Protocol):
    """One request of a surface, in the internal format."""

    @property
    def body(self) -> object:
        """The internal body: what policy scans, limits reserve for and providers receive. The
        pipeline checks it (with the endpoint's validator) before anything reads it."""

    @property
    def native(self) -> JSON | None:
        """The body in the surface's own protocol, for a deployment that speaks it; or None."""

    async def answer(self, result: JSON) -> bytes:
        """A complete internal answer, written in the surface's format."""

    async def replay(self, cached: bytes) -> bytes:
        """A cached internal answer (the bytes of one), written in the surface's format."""

    def events(self) -> Encoder | None:
        """The encoder for this request's stream; None for OpenAI's format, the internal one."""


class Surface(Protocol):
    """One wire format: how its requests are read, and how its failures are written."""

    async def translate(self, gateway: Gateway, key: ApiKey | None, parsed: object) -> Translated:
        """The request in the internal format (`key` is the caller, already authenticated); a
        malformed one raises `InvalidRequestError` (or another `GatewayError`) naming the field
        in the surface's own terms."""

    def error(self, exc: GatewayError) -> tuple[int, bytes]:
        """The HTTP status and body for a failure, in the surface's error format."""
