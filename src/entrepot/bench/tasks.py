"""Loading task items: the team's own YAML and JSONL files, and built-in packs (`pack:NAME`).

Everything that can be wrong with an item is found here, before any model is asked, and the
error names the file, the line (JSONL) or item (YAML, numbered from 1) and the field — a typo
found after an hour of paid model calls is a typo found too late.

File shapes:

- YAML: a list of items, or a mapping with `task:` (the task name), an optional `grader:` used
  by every item that has none of its own, and `items:` (the list). `.json` files are read the
  same way, JSON being YAML.
- JSONL: one item per line; blank lines are skipped.

An item without `task` belongs to the file's task name, else to the file's stem. Item ids must
be unique across everything loaded, since results and the response cache are keyed by id.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from entrepot.bench.graders import item_problem
from entrepot.bench.schema import GraderSpec, TaskItem
from entrepot.config import CheckedLoader
from entrepot.exceptions import ConfigError

PACK_PREFIX = "pack:"
YAML_SUFFIXES = (".yaml", ".yml", ".json")
_FILE_KEYS = {"task", "grader", "items"}

# (where an item came from, e.g. "tasks.jsonl line 3", the item)
_Located = tuple[str, TaskItem]


def _fields(exc: ValidationError) -> str:
    """Pydantic's errors as "field a.b: message", the item itself when no field is at fault."""
    return "; ".join(
        f"field {'.'.join(map(str, error['loc'])) or '(item)'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )


def _item(where: str, raw: Any, task: str, grader: dict[str, Any] | None) -> _Located:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an item must be a mapping, got {type(raw).__name__}")
    if "id" in raw:
        where = f"{where} (id {raw['id']!r})"
    data = {"task": task, **raw}
    if grader is not None and "grader" not in raw:
        data["grader"] = grader
    try:
        item = TaskItem.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_fields(exc)}") from None
    return _gradable(where, item)


def _gradable(where: str, item: TaskItem) -> _Located:
    problem = item_problem(item) or _unfilled(item)
    if problem is not None:
        raise ConfigError(f"{where}: field {problem}")
    return where, item


def _unfilled(item: TaskItem) -> str | None:
    """A prompt's placeholder that the item's variables do not fill, found when the file is
    read rather than as a KeyError when the item is asked."""
    if item.prompt is None:
        return None
    try:
        names = [
            name for _, name, _, _ in string.Formatter().parse(item.prompt) if name is not None
        ]
    except ValueError as exc:
        return f"prompt: not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
    for name in names:
        base = re.split(r"[.\[]", name, maxsplit=1)[0]
        if not base or base.isdigit():
            return f"prompt: {{{name}}} needs a name, filled from the item's variables"
        if base not in item.variables:
            given = ", ".join(sorted(item.variables)) or "none"
            return f"variables: the prompt uses {{{base}}}, which is not given (given: {given})"
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"task file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read task file {path}: {exc}") from None


def _jsonl(path: Path) -> list[_Located]:
    items = []
    for number, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} line {number}: invalid JSON: {exc.msg}") from None
        items.append(_item(f"{path} line {number}", raw, path.stem, None))
    return items


def _yaml_document(path: Path) -> Any:
    try:
        return yaml.load(_read(path), Loader=CheckedLoader)  # impossible dates: a YAML error
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None


def _yaml(path: Path) -> list[_Located]:
    document = _yaml_document(path)
    task, grader, raw_items = path.stem, None, document
    if isinstance(document, dict):
        unknown = sorted(map(str, set(document) - _FILE_KEYS))
        if unknown:
            raise ConfigError(
                f"{path}: unknown key(s) {', '.join(unknown)}; expected task, grader, items"
            )
        task = document.get("task", task)
        if not isinstance(task, str):
            raise ConfigError(f"{path}: field task: must be a string, got {task!r}")
        grader = document.get("grader")
        try:
            GraderSpec.model_validate(grader or {})
        except ValidationError as exc:
            raise ConfigError(f"{path}: default grader: {_fields(exc)}") from None
        raw_items = document.get("items")
    if not isinstance(raw_items, list):
        raise ConfigError(f"{path}: expected a list of items, or a mapping with an items list")
    return [_item(f"{path} item {n}", raw, task, grader) for n, raw in enumerate(raw_items, 1)]


def _source(entry: str | Path) -> list[_Located]:
    if isinstance(entry, str) and entry.startswith(PACK_PREFIX):
        from entrepot.bench.packs import load_pack  # imported only when a pack is asked for

        items = load_pack(entry.removeprefix(PACK_PREFIX))
        return [_gradable(f"{entry} item {n}", item) for n, item in enumerate(items, 1)]
    path = Path(entry)
    if path.suffix == ".jsonl":
        located = _jsonl(path)
    elif path.suffix in YAML_SUFFIXES:
        located = _yaml(path)
    else:
        raise ConfigError(f"task file {path}: expected .yaml, .yml, .json or .jsonl")
    if not located:
        raise ConfigError(f"task file {path} has no items")
    return located


def load_tasks(paths: Sequence[str | Path]) -> list[TaskItem]:
    """Every item of every entry, in order; an entry is a file path or `pack:NAME`.

    Raises `ConfigError` naming the file, line or item, and field of the first problem found.
    """
    items: list[TaskItem] = []
    seen: dict[str, str] = {}
    for entry in paths:
        for where, item in _source(entry):
            if item.id in seen:
                raise ConfigError(
                    f"duplicate item id {item.id!r}: in {seen[item.id]} and in {where}"
                )
            seen[item.id] = where
            items.append(item)
    return items
