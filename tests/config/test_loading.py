"""Loading `entrepot.yaml`: the embedded default, where the file is found, and errors that
point at the line and the dotted field path."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from entrepot.config import BUNDLED_ALIAS, BUNDLED_TARGET, Config, is_loopback, load_config
from entrepot.exceptions import ConfigError
from tests.config.files import VALID, write


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
