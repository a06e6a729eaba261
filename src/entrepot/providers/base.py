"""What a provider is: the one small protocol every upstream speaks to the gateway.

Requests and responses cross this boundary as OpenAI-format dicts (the wire format clients
already speak), so the common case — an OpenAI-compatible upstream — is a near pass-through and
only providers with another protocol pay for translation.

Contract for streaming: the gateway always asks for usage (`stream_options.include_usage`), and a
provider's stream ends with one chunk whose `choices` is empty and whose `usage` is set, so the
ledger can bill a stream exactly. The API layer hides that chunk from clients that did not ask.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from entrepot.config import ModelConfig
from entrepot.types import JSON


class Provider(Protocol):
    """One deployment of one upstream. Built from its `ModelConfig` by the registry.

    Every method takes the client's OpenAI-format body with `model` already replaced by the
    deployment's target. Failures are raised as `entrepot.exceptions.GatewayError` subclasses:
    `UpstreamError` (unreachable, 5xx, malformed answer), `UpstreamTimeoutError`,
    `UpstreamRejectedError` (the upstream's own 4xx), `InvalidRequestError` (an operation the
    provider does not support), `OverloadedError` (a local queue is full).
    """

    config: ModelConfig

    async def start(self) -> None:
        """Open sessions or load weights; called once before the first request."""

    async def close(self) -> None:
        """Release sessions, threads and memory; called once at shutdown."""

    async def chat(self, body: JSON) -> JSON:
        """A complete `chat.completion` object."""

    def stream_chat(self, body: JSON) -> AsyncIterator[JSON]:
        """`chat.completion.chunk` objects, ending with the usage chunk."""

    async def complete(self, body: JSON) -> JSON:
        """A complete `text_completion` object (legacy completions endpoint)."""

    def stream_complete(self, body: JSON) -> AsyncIterator[JSON]:
        """`text_completion` chunks, ending with the usage chunk."""

    async def embed(self, body: JSON) -> JSON:
        """An embeddings `list` object."""

    async def health(self) -> bool:
        """Cheap liveness check, without spending tokens."""
