"""`policy:` names only the data classes it declares."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrepot.config import load_config
from entrepot.exceptions import ConfigError
from tests.config.files import write


def test_policy_names_only_declared_classes(tmp_path: Path) -> None:
    text = "policy:\n  default_class: secret\n"
    with pytest.raises(ConfigError, match=r"unknown data classes \['secret'\]"):
        load_config(write(tmp_path, text))
