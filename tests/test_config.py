"""The configuration schema: the embedded default, loading, and errors that point at the line."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from entrepot.config import (
    BUNDLED_ALIAS,
    BUNDLED_TARGET,
    Config,
    ModelConfig,
    is_loopback,
    load_config,
)
from entrepot.exceptions import ConfigError

VALID = """\
server:
  host: 0.0.0.0
  port: 9001
  require_client_keys: true
store:
  ledger_batch_size: 50
models:
  - alias: fake/echo
    provider: openai_compatible
    target: echo-model
    base_url: http://127.0.0.1:9999/v1
    api_key_env: ECHO_KEY
    jurisdiction: US
    price:
      input_per_1m: "2.00"
      output_per_1m: "8.00"
      cached_input_per_1m: "0.50"
      as_of: 2026-01-15
  - alias: claude
    provider: anthropic
    target: claude-sonnet-4-5
"""


def write(tmp_path: Path, text: str, name: str = "entrepot.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENTREPOT_CONFIG", raising=False)


def test_embedded_default_is_one_bundled_local_model_on_loopback() -> None:
    config = load_config()
    assert config == Config()
    assert config.server.host == "127.0.0.1"
    assert is_loopback(config.server.host)
    assert config.server.port == 8000
    assert config.server.require_client_keys is False
    assert len(config.models) == 1
    (model,) = config.models
    assert model.alias == BUNDLED_ALIAS == "local/smollm2-135m-instruct"
    assert model.provider == "llama_cpp"
    assert model.target == BUNDLED_TARGET
    assert model.jurisdiction == "local"
    assert model.licence == "Apache-2.0"
    assert model.price is None
    assert config.model(BUNDLED_ALIAS) is model
    assert config.model("nope") is None


def test_loads_a_valid_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 9001
    assert config.server.require_client_keys is True
    assert config.store.ledger_batch_size == 50
    assert [m.alias for m in config.models] == ["fake/echo", "claude"]
    echo = config.models[0]
    assert echo.base_url == "http://127.0.0.1:9999/v1"
    assert echo.jurisdiction == "US"
    assert echo.deployment == "openai_compatible:fake/echo"
    assert echo.price is not None
    assert echo.price.input_per_1m == Decimal("2.00")
    assert echo.price.output_per_1m == Decimal("8.00")
    assert echo.price.cached_input_per_1m == Decimal("0.50")
    assert echo.price.currency == "USD"
    assert echo.price.as_of == dt.date(2026, 1, 15)


def test_path_argument_accepts_str(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, VALID)))
    assert config.server.port == 9001


def test_api_key_is_read_from_the_named_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write(tmp_path, VALID))
    monkeypatch.delenv("ECHO_KEY", raising=False)
    assert config.models[0].api_key() is None
    monkeypatch.setenv("ECHO_KEY", "sk-test")
    assert config.models[0].api_key() == "sk-test"
    assert config.models[1].api_key() is None


def test_env_var_names_the_file_when_no_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTREPOT_CONFIG", str(write(tmp_path, VALID)))
    assert [m.alias for m in load_config().models] == ["fake/echo", "claude"]


def test_explicit_path_beats_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTREPOT_CONFIG", str(tmp_path / "missing.yaml"))
    other = write(tmp_path, "server:\n  port: 1234\n", "other.yaml")
    assert load_config(other).server.port == 1234


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == Config()


def test_wrong_type_names_line_and_path(tmp_path: Path) -> None:
    text = VALID.replace(
        "    target: claude-sonnet-4-5\n", "    target: x\n    jurisdiction: [1]\n"
    )
    line = text.splitlines().index("    jurisdiction: [1]") + 1
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert f"line {line}: models.1.jurisdiction:" in message
    assert "valid string" in message
    assert str(tmp_path / "entrepot.yaml") in message


def test_negative_price_names_line_and_path(tmp_path: Path) -> None:
    text = """\
models:
  - alias: a
    provider: llama_cpp
    target: bundled:smollm2-135m-instruct
  - alias: b
    provider: openai_compatible
    target: gpt-4.1
    base_url: http://127.0.0.1:1/v1
    price:
      output_per_1m: 1
      input_per_1m: -0.5
      as_of: 2026-01-01
"""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "line 11: models.1.price.input_per_1m:" in message
    assert "greater than or equal to 0" in message
    assert len(message.splitlines()) == 1


def test_every_error_is_reported(tmp_path: Path) -> None:
    text = "server:\n  port: 70000\nstore:\n  ledger_batch_size: 0\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert "line 2: server.port:" in lines[0]
    assert "line 4: store.ledger_batch_size:" in lines[1]


def test_unknown_field_rejected(tmp_path: Path) -> None:
    text = "server:\n  host: 127.0.0.1\n  prot: 8080\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "line 3: server.prot: Extra inputs are not permitted" in message


def test_missing_required_field_points_at_its_mapping(tmp_path: Path) -> None:
    text = "server:\n  port: 8000\nmodels:\n  - alias: x\n    provider: llama_cpp\n"
    with pytest.raises(ConfigError, match=r"line 4: models\.0\.target: Field required"):
        load_config(write(tmp_path, text))


def test_unknown_top_level_field_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 1: modles: Extra inputs"):
        load_config(write(tmp_path, "modles: []\n"))


def test_one_alias_may_have_several_deployments(tmp_path: Path) -> None:
    text = (
        "models:\n"
        "  - {alias: same, provider: llama_cpp, target: a, name: first}\n"
        "  - {alias: same, provider: llama_cpp, target: b, name: second}\n"
    )
    config = load_config(write(tmp_path, text))
    assert [m.deployment for m in config.models] == ["first", "second"]


def test_duplicate_deployment_rejected(tmp_path: Path) -> None:
    text = (
        "models:\n"
        "  - {alias: same, provider: llama_cpp, target: a}\n"
        "  - {alias: same, provider: llama_cpp, target: b}\n"
    )
    with pytest.raises(ConfigError, match=r"deployment 'llama_cpp:same' is configured twice"):
        load_config(write(tmp_path, text))


def test_policy_names_only_declared_classes(tmp_path: Path) -> None:
    text = "policy:\n  default_class: secret\n"
    with pytest.raises(ConfigError, match=r"unknown data classes \['secret'\]"):
        load_config(write(tmp_path, text))


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


def test_not_yaml_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "models: [unclosed\n  - : {\n"))


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load_config(write(tmp_path, text))


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"cannot read config .*nope\.yaml"):
        load_config(missing)


def test_missing_file_from_env_is_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTREPOT_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match=r"gone\.yaml"):
        load_config()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("1270.0.0.1", False),
        ("example.com", False),
        ("127.attacker.example", False),
        ("127.0.0.1.example", False),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", False),
        ("LocalHost", True),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_an_impossible_date_names_its_line(tmp_path: Path) -> None:
    text = """\
models:
  - alias: a
    provider: openai_compatible
    target: t
    base_url: http://h/v1
    price: {input_per_1m: 1, output_per_1m: 2, as_of: 2025-13-01}
"""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert "line 6:" in str(caught.value)
    assert "'2025-13-01' is not a date" in str(caught.value)


def test_an_unknown_provider_is_refused_by_the_schema_with_its_line(tmp_path: Path) -> None:
    text = "models:\n  - {alias: a, provider: openai-compatible, target: t, base_url: http://h}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    message = str(caught.value)
    assert "line 2: models.0.provider" in message
    assert "'openai_compatible', 'anthropic' or 'llama_cpp'" in message


def test_every_provider_the_schema_admits_is_registered() -> None:
    from typing import get_args

    from entrepot.config import ProviderName
    from entrepot.providers.registry import PROVIDERS

    assert set(get_args(ProviderName)) == set(PROVIDERS)
