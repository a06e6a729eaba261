"""Schemathesis against the gateway's own OpenAPI description, over loopback with a real key.

Every operation is fuzzed with schema-valid and schema-invalid requests (schemathesis's coverage
phase adds boundary values and undeclared methods); no answer may be a 5xx, and each must match the
status codes, media types, headers and OpenAI body schemas the description declares — including
every event of a streamed completion.

Only the model field and the data-class header are pinned, to the aliases and classes this gateway
has: left free, nearly every generated request would stop at a 404 or a 400 and never reach the
upstream and the response paths behind it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from entrepot.api import openapi
from entrepot.exceptions import GatewayError, UpstreamRejectedError
from entrepot.limits import limiter
from tests.conftest import ADMIN_KEY, UPSTREAM_KEY, Server
from tests.schemas import openai_spec, read_nullable
from tests.security.conftest import ECHO, EMBEDDER, OTHER

MAX_EXAMPLES = 100
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    unsupported_method,
]
OPERATIONS = {
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/embeddings",
    "POST /v1/responses",
    "GET /v1/responses/{response_id}",
    "DELETE /v1/responses/{response_id}",
    "GET /v1/responses/{response_id}/input_items",
    "GET /v1/models",
    "GET /v1/models/{model}",
    "GET /health",
    "GET /openapi.json",
}
CASES: Counter[str] = Counter()


def _without_discriminators(node: Any) -> Any:
    """OpenAI's schemas name a `discriminator` without a mapping, and schemathesis cannot find
    the values of `type` behind their `allOf`s: it refuses a `function_call_output` item that
    the `oneOf` itself accepts. A discriminator is only a hint for choosing among the `oneOf`,
    so the check goes by the `oneOf` alone."""
    if isinstance(node, dict):
        return {k: _without_discriminators(v) for k, v in node.items() if k != "discriminator"}
    if isinstance(node, list):
        return [_without_discriminators(v) for v in node]
    return node


def _fuzz_schema() -> schemathesis.BaseSchema:
    document = openapi.document()
    document["components"]["schemas"] = _without_discriminators(document["components"]["schemas"])
    document["components"]["schemas"]["ModelId"] = {"enum": [ECHO, EMBEDDER]}
    document["components"]["schemas"]["ModelIdsResponses"] = {"enum": [ECHO]}
    document["components"]["parameters"]["DataClass"]["schema"] = {
        "enum": ["public", "internal", "confidential"]
    }
    config = schemathesis.Config.from_dict(
        {"generation": {"with-security-parameters": False, "deterministic": True}}
    )
    return schemathesis.openapi.from_dict(document, config=config)


schema = _fuzz_schema()


@pytest.fixture(scope="module", autouse=True)
def case_counts() -> Iterator[None]:
    yield
    if CASES:
        print("\nschemathesis cases:", dict(sorted(CASES.items())), "total", CASES.total())


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_gateway_conforms(case: schemathesis.Case, secure_gateway: Server, secure_key: str) -> None:
    CASES[case.operation.label] += 1
    if "response_id" in (case.path_parameters or {}) and CASES[case.operation.label] % 2:
        # Half of the stored-response cases name a response that exists, so that their 200s
        # are checked too: random ids would only ever be unknown.
        case.path_parameters["response_id"] = _stored_response(secure_gateway, secure_key)
    case.call_and_validate(
        base_url=secure_gateway.url,
        headers={"authorization": f"Bearer {secure_key}"},
        timeout=30,
        checks=CHECKS,
    )


def _stored_response(gateway: Server, key: str) -> str:
    """The id of a new stored response with a few input items of different kinds."""
    items = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "found"},
    ]
    response = httpx.post(
        gateway.url + "/v1/responses",
        json={"model": ECHO, "input": items},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def test_every_operation_was_fuzzed() -> None:
    if not CASES:
        pytest.skip("the fuzz itself was not selected")
    assert set(CASES) == OPERATIONS
    assert all(count >= 10 for count in CASES.values()), CASES


def test_description_is_served_without_a_key_and_without_secrets(secure_gateway: Server) -> None:
    response = httpx.get(secure_gateway.url + "/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == openapi.document()
    assert {f"{m.upper()} {p}" for p, ops in response.json()["paths"].items() for m in ops} == (
        OPERATIONS
    )
    for secret in (ADMIN_KEY, UPSTREAM_KEY, ECHO, OTHER, EMBEDDER, "FAKE_UPSTREAM_KEY"):
        assert secret not in response.text


def _status_codes(cls: type[GatewayError]) -> set[int]:
    codes = {int(cls.status_code)}
    for sub in cls.__subclasses__():
        codes |= _status_codes(sub)
    return codes


def test_every_error_status_is_described() -> None:
    """Each status an inference request can fail with is in the description, in OpenAI's error
    format; 499 (the client left, nobody reads it) and 405 (another method) excepted."""
    assert limiter.RateLimitedError.status_code == 429
    raised = _status_codes(GatewayError) - {UpstreamRejectedError.status_code, 405, 499}
    paths = openapi.document()["paths"]
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"):
        responses = paths[path]["post"]["responses"]
        assert {str(code) for code in raised} <= set(responses), path
        assert "4XX" in responses, "an upstream's own refusal is passed on with its status"


DOC_KEYWORDS = {"description", "example", "examples", "title", "default", "deprecated"}


def _without_documentation(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _without_documentation(v)
            for k, v in node.items()
            if k not in DOC_KEYWORDS and not k.startswith("x-")
        }
    if isinstance(node, list):
        return [_without_documentation(v) for v in node]
    return node


def test_openai_schemas_are_copied_faithfully() -> None:
    """Schemas under OpenAI's names are OpenAI's, less documentation keywords and with
    `nullable` read as a null type; only the gateway's own request bodies and events differ."""
    official = openai_spec()["components"]["schemas"]
    ours = openapi.document()["components"]["schemas"]
    copied = [name for name in ours if name in official]
    assert len(copied) > 40
    for name in copied:
        assert ours[name] == read_nullable(_without_documentation(official[name])), name
