"""`models:` entries: their key from the environment, the URL a remote provider needs, aliases,
and the providers the schema admits."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrepot.config import ModelConfig, load_config
from entrepot.exceptions import ConfigError
from tests.config.files import VALID, write


def test_api_key_is_read_from_the_named_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write(tmp_path, VALID))
    monkeypatch.delenv("ECHO_KEY", raising=False)
    assert config.models[0].api_key() is None
    monkeypatch.setenv("ECHO_KEY", "sk-test")
    assert config.models[0].api_key() == "sk-test"
    assert config.models[1].api_key() is None


def test_openai_compatible_needs_base_url(tmp_path: Path) -> None:
    text = "models:\n  - alias: x\n    provider: openai_compatible\n    target: gpt-4.1\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "line 2: models.0:" in message
    assert "provider 'openai_compatible' needs base_url" in message


def test_anthropic_gets_default_base_url() -> None:
    model = ModelConfig(alias="c", provider="anthropic", target="claude-haiku-4-5")
    assert model.base_url == "https://api.anthropic.com"
    own = ModelConfig(alias="c", provider="anthropic", target="t", base_url="http://x")
    assert own.base_url == "http://x"


def test_alias_with_whitespace_rejected() -> None:
    with pytest.raises(ValueError, match="no whitespace"):
        ModelConfig(alias="has space", provider="llama_cpp", target="t")


def test_every_provider_the_schema_admits_is_registered() -> None:
    from typing import get_args

    from entrepot.config import ProviderName
    from entrepot.providers.registry import PROVIDERS

    assert set(get_args(ProviderName)) == set(PROVIDERS)
