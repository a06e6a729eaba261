"""Reading `entrepot.yaml`. Validation happens once, at start-up; a mistake is reported with the
YAML line and the dotted field path so it can be fixed without guessing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from entrepot.config.root import Config
from entrepot.exceptions import ConfigError


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load `path`, else `$ENTREPOT_CONFIG`, else the embedded default (the bundled model)."""
    chosen = path or os.environ.get("ENTREPOT_CONFIG")
    if not chosen:
        return Config()
    file = Path(chosen)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {file}: {exc.strerror}") from exc
    try:
        node = yaml.compose(text)
        data = yaml.load(text, Loader=CheckedLoader)
    except yaml.MarkedYAMLError as exc:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        raise ConfigError(f"{file}: {where}not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(node, loc)
            at = f"line {line}: " if line else ""
            lines.append(f"{file}: {at}{where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


class CheckedLoader(yaml.SafeLoader):
    """A safe loader whose impossible dates (`2025-13-01`) are YAML errors with their line, as
    every other mistake in the file is, rather than a ValueError from deep inside the parser."""

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{node.value!r} is not a date ({exc}); write YYYY-MM-DD",
                node.start_mark,
            ) from None


CheckedLoader.add_constructor("tag:yaml.org,2002:timestamp", CheckedLoader.construct_yaml_timestamp)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a 1-based line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                return line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
        else:
            return line
        line = node.start_mark.line + 1
    return line
