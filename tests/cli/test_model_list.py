"""`entrepot models`: the configured models with their licence and price."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrepot.config import BUNDLED_ALIAS
from tests.cli.invoke import ok, write

pytestmark = pytest.mark.usefixtures("cli_env")


def test_models_shows_the_bundled_model() -> None:
    out = ok("models")
    assert BUNDLED_ALIAS in out
    assert "llama_cpp" in out
    assert "Apache-2.0" in out
    assert "vCPU × 0.0504 (AWS EC2 on-demand m7i.large" in out  # priced by default, not free


def test_models_shows_prices_from_config(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """\
models:
  - {alias: echo, provider: openai_compatible, target: x, base_url: "http://h/v1",
     price: {input_per_1m: "2.00", output_per_1m: "8.00", as_of: 2026-01-15}}
  - {alias: ds, provider: openai_compatible, target: deepseek/deepseek-chat, base_url: "http://h"}
  - {alias: box, provider: llama_cpp, target: t, hardware_cost_per_hour: "0.36"}
""",
    )
    out = ok("models", "--config", str(config))
    assert "$2.00·$8.00 (2026-01-15)" in out
    assert "$0.280·$0.420 (2025-09-29)" in out
    assert "0.36 USD/hour of hardware" in out
    assert BUNDLED_ALIAS not in out
