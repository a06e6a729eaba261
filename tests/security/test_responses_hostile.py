"""Responses API bodies with a list or an object where a name belongs: each a 400 in OpenAI's
error format naming the field (they once failed a set lookup, as a 500), and the gateway still
answers afterwards."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Server
from tests.schemas import validate
from tests.security.conftest import ECHO

TEXT = "hello"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"reasoning": {"summary": {}}}, "reasoning.summary"),
        ({"reasoning": {"summary": ["auto"]}}, "reasoning.summary"),
        ({"reasoning": {"effort": {"low": 1}}}, "reasoning.effort"),
        ({"reasoning": {"effort": []}}, "reasoning.effort"),
        ({"input": [{"role": ["user"], "content": TEXT}]}, "input[0].role"),
        ({"input": [{"type": "message", "role": {}, "content": TEXT}]}, "input[0].role"),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "input_image",
                                "image_url": "http://x/i.png",
                                "detail": {"a": 1},
                            }
                        ],
                    }
                ]
            },
            "input[0].content[0].detail",
        ),
    ],
)
def test_a_container_where_a_name_belongs_is_a_400(
    secure_gateway: Server, secure_key: str, fields: dict[str, Any], param: str
) -> None:
    body = {"model": ECHO, "input": TEXT, **fields}
    response = httpx.post(
        secure_gateway.url + "/v1/responses",
        json=body,
        headers={"authorization": f"Bearer {secure_key}"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    validate(response.json(), "ErrorResponse")
    assert response.json()["error"]["param"] == param
    assert httpx.get(secure_gateway.url + "/health").status_code == 200
