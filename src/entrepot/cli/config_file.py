"""Adding a model entry to the configuration file, leaving the rest of the file as it was.

`entrepot models add` writes registrations into the file rather than into the store: the file is
where every other model, route and policy is declared, reviewed and versioned, and where `serve`,
`bench` and `audit` all read models from, so a registered derivative is served, benchmarked and
audited like any model, and its declared digest is checked wherever the file is used. The entry
is appended as text after the last one (comments and layout stay), and the edited file is
validated in full before it replaces the old one, so a registration never leaves a file that
`serve` would refuse.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from entrepot.config import Config, load_config
from entrepot.exceptions import ConfigError


def add_model(path: Path, entry: dict[str, Any]) -> Config:
    """Append `entry` to the `models` of the file at `path` (created if missing); returns the
    configuration as it now reads."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    edited = _with_entry(path, text, entry)
    directory = path.resolve().parent
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".new")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(edited)
        try:
            config = load_config(temporary)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(temporary, str(path))) from None
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return config


def _with_entry(path: Path, text: str, entry: dict[str, Any]) -> str:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if root is None:
        return text + _new_models_block(text, entry)
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}: the top level must be a mapping")
    models = next((value for key, value in root.value if key.value == "models"), None)
    if models is None:
        return text + _new_models_block(text, entry)
    if not isinstance(models, yaml.SequenceNode) or models.flow_style or not models.value:
        line = models.start_mark.line + 1
        raise ConfigError(
            f"{path}: line {line}: models: is not a list written one entry per line"
            " (`- alias: …`); write it so, and add the model again"
        )
    last = models.value[-1]
    end = text.find("\n", _end_of(last).index)
    end = len(text) if end < 0 else end + 1
    dash = text.rfind("-", 0, last.start_mark.index)
    block = _indented(entry, dash - text.rfind("\n", 0, dash) - 1)
    head = text[:end] if text[:end].endswith("\n") else text[:end] + "\n"
    return head + block + text[end:]


def _end_of(node: yaml.Node) -> yaml.Mark:
    """Where the last value inside `node` ends: the end of the entry's last line of content,
    not the start of whatever comment or key follows it."""
    while isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    return node.end_mark


def _new_models_block(text: str, entry: dict[str, Any]) -> str:
    """A `models:` list for a file that has none. Without one, the file served the bundled
    model; the list keeps it, so adding a model takes none away."""
    bundled = (
        Config()
        .models[0]
        .model_dump(mode="json", include={"alias", "provider", "target", "licence"})
    )
    separator = "" if not text or text.endswith("\n") else "\n"
    return separator + "models:\n" + _indented(bundled, 2) + _indented(entry, 2)


def _indented(entry: dict[str, Any], spaces: int) -> str:
    dumped = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=1000)
    return "".join(" " * spaces + line for line in dumped.splitlines(keepends=True))
