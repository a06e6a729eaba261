"""The gateway's OpenAPI description, served at GET /openapi.json without a key.

The document ships in the package beside this module (`openapi.yaml`): the paths and error
responses this gateway serves, with OpenAI's own schemas for the bodies, so any OpenAPI tool can
check the gateway against OpenAI's shapes. It holds no configuration and no secrets — not even the
configured model names, which only a key may list — so it is parsed once and kept as bytes.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson
import yaml
from starlette.requests import Request
from starlette.responses import Response

from entrepot import __version__


def document() -> dict[str, Any]:
    """The description as a mapping, stamped with the running version."""
    text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    loaded["info"]["version"] = __version__
    return loaded


@cache
def _document_bytes() -> bytes:
    return orjson.dumps(document())


async def serve(_request: Request) -> Response:
    return Response(_document_bytes(), media_type="application/json")
