"""The package's shape: the import contracts in pyproject.toml (layers along the request path, no
cycles), and one home for every error type, whose docstring draws the hierarchy as it is."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import entrepot
from entrepot import exceptions

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _all_modules() -> list[str]:
    prefix = entrepot.__name__ + "."
    return [
        info.name
        for info in pkgutil.walk_packages(entrepot.__path__, prefix)
        if ".migrations" not in info.name and not info.name.endswith(".__main__")
    ]


def test_every_error_type_lives_in_exceptions() -> None:
    """Catching an error must never mean importing the layer that raises it."""
    elsewhere = []
    for name in _all_modules():
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and name != exceptions.__name__
            ):
                elsewhere.append(f"{name}.{attribute}")
    assert elsewhere == []


def test_the_docstring_draws_the_hierarchy_as_it_is() -> None:
    """Each class of exceptions.py appears in the tree once, under its real parent."""
    assert exceptions.__doc__ is not None
    drawn: dict[str, str | None] = {}
    parents: list[tuple[int, str]] = []
    for line in exceptions.__doc__.splitlines():
        match = re.match(r"^(\s*(?:[│ ]   )*(?:[├└]── )?)(\w+Error)\b", line)
        if match is None:
            continue
        depth = len(match.group(1))
        while parents and parents[-1][0] >= depth:
            parents.pop()
        name = match.group(2)
        assert name not in drawn, f"{name} is drawn twice"
        drawn[name] = parents[-1][1] if parents else None
        parents.append((depth, name))
    defined = {
        name: value
        for name, value in vars(exceptions).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == exceptions.__name__
    }
    assert set(drawn) == set(defined)
    for name, parent in drawn.items():
        base = defined[name].__bases__[0]
        assert (base.__name__ if base is not Exception else None) == parent, name
