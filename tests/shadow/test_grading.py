"""Task graders on live traffic: only those that need no expected answer, one per task."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from entrepot.api.app import GatewayApp
from entrepot.bench.schema import GraderSpec
from entrepot.exceptions import ConfigError
from entrepot.shadow.grading import applies_live, difference, live_graders
from entrepot.shadow.serve import worker_app
from entrepot.shadow.traffic import ShadowTraffic


def task_file(tmp_path: Path, name: str, grader: dict[str, object], **item: object) -> str:
    path = tmp_path / f"{name}.yaml"
    items = [{"id": f"{name}-1", "prompt": "What is six times seven?", **item}]
    path.write_text(yaml.safe_dump({"task": name, "grader": grader, "items": items}))
    return str(path)


def test_graders_that_need_no_expected_answer_apply_live() -> None:
    assert applies_live(GraderSpec(kind="regex", pattern="42"))
    assert applies_live(GraderSpec(kind="json"))
    assert applies_live(GraderSpec(kind="normalised", constraints={"max_words": 10}))
    assert applies_live(GraderSpec(kind="refusal", expect_refusal=False))
    assert not applies_live(GraderSpec(kind="json", fields=["answer"]))
    assert not applies_live(GraderSpec(kind="exact"))
    assert not applies_live(GraderSpec(kind="judge", rubric="be right"))


def test_a_task_graded_by_its_expected_answers_is_refused_with_what_to_do(
    tmp_path: Path,
) -> None:
    path = task_file(tmp_path, "arith", {"kind": "numeric"}, expected=42)
    with pytest.raises(ConfigError) as caught:
        live_graders("support", [path])
    message = str(caught.value)
    assert message.startswith("routes.support.shadow.tasks: task 'arith' is graded by `numeric`")
    assert "Remove its file from the list" in message


def test_the_task_grader_scores_both_answers(tmp_path: Path) -> None:
    graders = live_graders(
        "support", [task_file(tmp_path, "sums", {"kind": "regex", "pattern": r"\b42\b"})]
    )
    body = {"messages": [{"role": "user", "content": "What is six times seven?"}]}
    spec = graders["sums"]
    assert asyncio.run(difference(spec, body, "It is 42.", "No idea.")) == 1.0
    assert asyncio.run(difference(spec, body, "No idea.", "It is 42.")) == -1.0
    assert asyncio.run(difference(spec, body, "42", "42!")) == 0.0


def test_serve_refuses_a_task_that_cannot_grade_live_traffic(tmp_path: Path) -> None:
    path = task_file(tmp_path, "arith", {"kind": "numeric"}, expected=42)
    config = {
        "models": [
            {
                "alias": "big",
                "provider": "openai_compatible",
                "target": "x",
                "base_url": "http://127.0.0.1:9/v1",
                "jurisdiction": "US",
            },
            {
                "alias": "small",
                "provider": "openai_compatible",
                "target": "y",
                "base_url": "http://127.0.0.1:9/v1",
                "jurisdiction": "US",
            },
        ],
        "routes": {
            "big": {
                "shadow": {
                    "candidate": "small",
                    "share": 0.1,
                    "max_spend": {"amount": 5},
                    "tasks": [path],
                }
            }
        },
    }
    config_path = tmp_path / "entrepot.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "entrepot", "serve", "--config", str(config_path), "--port", "9"],
        capture_output=True,
        text=True,
        env={**os.environ, "ENTREPOT_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"},
        timeout=60,
    )
    assert result.returncode == 2
    assert "routes.big.shadow.tasks: task 'arith' is graded by `numeric`" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_each_worker_of_a_fleet_shadows_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "models": [
            {
                "alias": "big",
                "provider": "openai_compatible",
                "target": "x",
                "base_url": "http://127.0.0.1:9/v1",
                "jurisdiction": "US",
            },
            {
                "alias": "small",
                "provider": "openai_compatible",
                "target": "y",
                "base_url": "http://127.0.0.1:9/v1",
                "jurisdiction": "US",
            },
        ],
        "routes": {
            "big": {"shadow": {"candidate": "small", "share": 0.1, "max_spend": {"amount": 5}}}
        },
    }
    config_path = tmp_path / "entrepot.yaml"
    config_path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("ENTREPOT_CONFIG", str(config_path))
    app = worker_app()
    assert isinstance(app, GatewayApp)
    assert isinstance(app.gateway.observer, ShadowTraffic)
    assert set(app.gateway.observer.lines) == {"big"}
    app.gateway.engine.dispose()
