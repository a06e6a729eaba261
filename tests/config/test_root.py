"""Checks across the whole file: several deployments of one alias, each named once."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrepot.config import load_config
from entrepot.exceptions import ConfigError
from tests.config.files import write


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
