"""Local deployments are priced by default from the shipped, dated hardware reference: the cores
(or GPU) they occupy times the on-demand cloud list price; the operator's own figure wins, and
`hardware: unpriced` is the only way to be unpriced."""

from __future__ import annotations

import datetime as dt
import os
import time
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from entrepot.cli import app
from entrepot.config import BUNDLED_ALIAS, Config, ModelConfig, load_config
from entrepot.exceptions import ConfigError
from entrepot.ledger.billing import bill, worst_case_costs
from entrepot.ledger.hardware import cores_used, hourly_rate, reference
from entrepot.types import TokenUsage, UsageRecord
from tests.ledger.test_billing import CHAT, Deployment


def local(**fields: Any) -> ModelConfig:
    base = {"alias": "box", "provider": "llama_cpp", "target": "t"}
    return ModelConfig.model_validate({**base, **fields})


def served(**fields: Any) -> ModelConfig:
    """A model server on this machine, reached by URL (vLLM, Ollama)."""
    base = {"provider": "openai_compatible", "base_url": "http://127.0.0.1:8080/v1"}
    return local(**{**base, **fields})


# -- the reference -------------------------------------------------------------------------------


def test_every_figure_is_sourced_dated_and_adds_up() -> None:
    raw = yaml.safe_load(
        resources.files("entrepot.ledger").joinpath("hardware_prices.yaml").read_text("utf-8")
    )
    figures = [raw["cpu"], *raw["gpus"].values()]
    assert len(figures) >= 3
    for figure in figures:
        assert isinstance(figure["as_of"], dt.date) and figure["region"] and figure["provider"]
        per_unit = Decimal(str(figure["instance_per_hour"])) / figure["instance_units"]
        assert per_unit == Decimal(str(figure["per_hour"])), figure["instance"]
    assert raw["cpu"]["unit"] == "vCPU" and {f["unit"] for f in raw["gpus"].values()} == {"GPU"}


# -- what a deployment costs an hour ----------------------------------------------------------


def test_the_bundled_model_is_priced_by_the_cores_llama_cpp_uses() -> None:
    (bundled,) = Config().models
    cores = max((os.cpu_count() or 1) // 2, 1)  # llama.cpp's own default thread count
    assert cores_used(bundled) == cores
    rate = hourly_rate(bundled)
    assert rate is not None and rate.units == cores
    assert rate.per_hour == cores * reference().cpu.per_hour == cores * Decimal("0.0504")
    assert rate.as_of == reference().cpu.as_of
    assert "vCPU" in rate.describe() and "m7i.large" in rate.describe()


def test_threads_gpus_own_figures_and_opting_out() -> None:
    eight = hourly_rate(local(local={"n_threads": 8}))
    assert eight is not None and eight.per_hour == 8 * reference().cpu.per_hour
    gpu = hourly_rate(local(hardware="nvidia-l4"))
    assert gpu is not None and (gpu.per_hour, gpu.units) == (Decimal("0.8048"), 1)
    own = hourly_rate(local(hardware_cost_per_hour="0.36"))
    assert own is not None and own.per_hour == Decimal("0.36") and own.as_of is None
    assert "configured" in own.describe()
    assert hourly_rate(local(hardware="unpriced")) is None


def test_a_server_by_url_is_priced_only_when_its_hardware_is_named() -> None:
    assert hourly_rate(served()) is None
    whole = hourly_rate(served(hardware="cpu"))
    assert whole is not None and whole.units == (os.cpu_count() or 1)
    gpu = hourly_rate(served(hardware="nvidia-a10g"))
    assert gpu is not None and gpu.per_hour == Decimal("1.006")


def test_unknown_kinds_and_two_prices_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown kind 'tpu-v9'; known: cpu, nvidia-t4"):
        hourly_rate(local(hardware="tpu-v9"))
    path = tmp_path / "entrepot.yaml"
    path.write_text(
        "models:\n"
        "  - alias: box\n"
        "    provider: llama_cpp\n"
        "    target: t\n"
        "    hardware: nvidia-l4\n"
        "    hardware_cost_per_hour: 1\n",
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigError, match=r"line 2: models\.0: .*hardware_cost_per_hour or hardware"
    ):
        load_config(path)


# -- billing and the command line -------------------------------------------------------------


def test_busy_time_is_billed_at_the_reference_rate_and_dated() -> None:
    deployment = Deployment(local(local={"n_threads": 2}))
    record = UsageRecord(request_id="r", endpoint="chat")
    bill(record, deployment, TokenUsage(1, 1), estimated=False, started=time.perf_counter() - 3.6)
    # 3.6 s of two vCPUs at 0.0504 USD an hour each: 0.0001008 USD, give or take the clock.
    assert record.cost_nanos == pytest.approx(100_800, rel=0.02)
    assert record.currency == "USD"
    assert record.price_date == reference().cpu.as_of.isoformat()
    (bound,) = worst_case_costs(100, CHAT, [deployment])
    assert bound.nanos > record.cost_nanos and bound.currency == "USD"
    unpriced = Deployment(local(hardware="unpriced"))
    assert worst_case_costs(100, CHAT, [unpriced]) == []


def test_models_shows_the_price_its_source_and_date(tmp_path: Path) -> None:
    path = tmp_path / "entrepot.yaml"
    path.write_text(
        "models:\n"
        "  - {alias: gpu, provider: llama_cpp, target: t, hardware: nvidia-t4}\n"
        "  - {alias: free, provider: llama_cpp, target: t, hardware: unpriced}\n",
        encoding="utf-8",
    )
    out = CliRunner().invoke(app, ["models", "--config", str(path)], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    assert "0.526 USD/hour: 1 GPU × 0.526 (AWS EC2 on-demand g4dn.xlarge, us-east-1" in out.output
    assert reference().cpu.as_of.isoformat() in out.output and "unpriced" in out.output
    bundled = CliRunner().invoke(app, ["models"], env={"COLUMNS": "250"})
    assert BUNDLED_ALIAS in bundled.output and "vCPU × 0.0504" in bundled.output


def test_an_unknown_hardware_kind_is_said_before_any_command_runs(tmp_path: Path) -> None:
    path = tmp_path / "entrepot.yaml"
    path.write_text(
        "models:\n  - {alias: box, provider: llama_cpp, target: t, hardware: h100}\n",
        encoding="utf-8",
    )
    out = CliRunner().invoke(app, ["models", "--config", str(path)], env={"COLUMNS": "250"})
    assert out.exit_code == 2
    assert "configuration error" in out.output and "unknown kind 'h100'" in out.output
    assert "Traceback" not in out.output
