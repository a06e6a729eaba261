"""An upstream's 401 tells the operator which variable the key came from, never the key."""

from __future__ import annotations

import asyncio

import pytest

from entrepot.config import ModelConfig
from entrepot.exceptions import UpstreamError
from entrepot.providers.openai_compatible import OpenAICompatibleProvider
from tests.conftest import Server, fake_model

WRONG = "ek-wrong-0123456789"


async def _rejection(config: ModelConfig) -> str:
    provider = OpenAICompatibleProvider(config)
    await provider.start()
    try:
        with pytest.raises(UpstreamError) as caught:
            await provider.chat(
                {"model": "echo-model", "messages": [{"role": "user", "content": "hi"}]}
            )
    finally:
        await provider.close()
    return caught.value.message


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (WRONG, "(401): check the key in $ENTREPOT_TEST_UPSTREAM_KEY"),
        (None, "(401): no key was sent: $ENTREPOT_TEST_UPSTREAM_KEY is not set"),
    ],
)
def test_a_rejected_key_names_its_variable(
    fake_openai: Server, monkeypatch: pytest.MonkeyPatch, value: str | None, says: str
) -> None:
    if value is None:
        monkeypatch.delenv("ENTREPOT_TEST_UPSTREAM_KEY", raising=False)
    else:
        monkeypatch.setenv("ENTREPOT_TEST_UPSTREAM_KEY", value)
    config = ModelConfig.model_validate(
        fake_model(fake_openai, "m", "echo-model", api_key_env="ENTREPOT_TEST_UPSTREAM_KEY")
    )
    message = asyncio.run(_rejection(config))
    assert says in message
    assert WRONG not in message
