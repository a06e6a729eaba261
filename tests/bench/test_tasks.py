"""Loading task files: YAML and JSONL shapes, task and grader defaults, ids unique across files,
`pack:NAME` entries, and errors that name the file, the line or item, and the field."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from entrepot.bench.schema import GraderSpec, TaskItem
from entrepot.bench.tasks import load_tasks
from entrepot.exceptions import ConfigError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path: Path, *items: dict[str, Any]) -> Path:
    return _write(path, "\n".join(json.dumps(item) for item in items) + "\n")


def test_yaml_list_takes_the_file_stem_as_task(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "capitals.yaml",
        '- {id: fr, prompt: "Capital of France?", expected: Paris}\n'
        '- {id: de, prompt: "Capital of Germany?", expected: Berlin, task: europe}\n',
    )
    items = load_tasks([path])
    assert [(i.id, i.task, i.expected) for i in items] == [
        ("fr", "capitals", "Paris"),
        ("de", "europe", "Berlin"),
    ]
    assert items[0].grader == GraderSpec()


def test_yaml_mapping_applies_task_name_and_default_grader(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "support.yml",
        """
task: triage
grader: {kind: choice}
items:
  - id: t1
    messages: [{role: user, content: "Refund please. A) billing B) bug"}]
    expected: A
  - id: t2
    prompt: "How many days? {text}"
    variables: {text: two weeks}
    expected: 14
    grader: {kind: numeric, tolerance: 0.5}
""",
    )
    first, second = load_tasks([str(path)])
    assert (first.task, first.grader.kind) == ("triage", "choice")
    assert (second.task, second.grader.kind, second.grader.tolerance) == ("triage", "numeric", 0.5)
    assert second.chat_messages() == [{"role": "user", "content": "How many days? two weeks"}]


def test_jsonl_items_in_order_across_files(tmp_path: Path) -> None:
    a = _jsonl(
        tmp_path / "a.jsonl",
        {"id": "a1", "prompt": "x", "expected": "x", "grader": {"kind": "exact"}},
        {"id": "a2", "prompt": "y", "expected": "y", "task": "other"},
    )
    b = _write(tmp_path / "b.json", json.dumps([{"id": "b1", "prompt": "z", "expected": "z"}]))
    items = load_tasks([a, b])
    assert [(i.id, i.task) for i in items] == [("a1", "a"), ("a2", "other"), ("b1", "b")]
    assert items[0].grader.kind == "exact"


def test_jsonl_skips_blank_lines_and_reads_dumped_items(tmp_path: Path) -> None:
    item = TaskItem(id="s", prompt="p", expected={"k": 1}, grader=GraderSpec(kind="json"))
    dumped = json.dumps(item.model_dump(by_alias=True))
    path = _write(tmp_path / "dump.jsonl", f"\n{dumped}\n\n")
    assert load_tasks([path]) == [item]


def test_duplicate_ids_across_files_name_both(tmp_path: Path) -> None:
    a = _jsonl(tmp_path / "a.jsonl", {"id": "q", "prompt": "x", "expected": "x"})
    b = _write(
        tmp_path / "b.yaml",
        "- {id: r, prompt: y, expected: y}\n- {id: q, prompt: z, expected: z}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_tasks([a, b])
    message = str(caught.value)
    assert "duplicate item id 'q'" in message
    assert f"{a} line 1" in message and f"{b} item 2" in message


def test_the_same_file_twice_is_a_duplicate(tmp_path: Path) -> None:
    a = _jsonl(tmp_path / "a.jsonl", {"id": "q", "prompt": "x", "expected": "x"})
    with pytest.raises(ConfigError, match="duplicate item id 'q'"):
        load_tasks([a, a])


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"max_tokens": 0}, "field max_tokens"),
        ({"grader": {"kind": "exact", "shema": {}}}, "field grader.shema"),
        ({"grader": {"kind": "guess"}}, "field grader.kind"),
        ({"prompt": None}, "field (item)"),
        ({"grader": {"kind": "judge"}}, "field grader.rubric"),
        ({"expected": "BB", "grader": {"kind": "choice"}}, "field expected"),
        (
            {"prompt": "{a} + {b.real}?", "variables": {"a": 1}},
            "field variables: the prompt uses {b}, which is not given (given: a)",
        ),
        ({"prompt": "{0} + 1?"}, "field prompt: {0} needs a name"),
        ({"prompt": "a set {1, 2"}, "field prompt: not a valid template"),
    ],
)
def test_jsonl_errors_name_file_line_and_field(
    tmp_path: Path, bad: dict[str, Any], field: str
) -> None:
    good = {"id": "ok", "prompt": "x", "expected": "x"}
    path = _jsonl(tmp_path / "t.jsonl", good, {**good, "id": "bad", **bad})
    with pytest.raises(ConfigError) as caught:
        load_tasks([path])
    message = str(caught.value)
    assert message.startswith(f"{path} line 2 (id 'bad'): ")
    assert field in message


def test_yaml_errors_name_file_item_and_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.yaml",
        "items:\n  - {id: ok, prompt: x, expected: x}\n  - {id: 7, prompt: y, expected: y}\n",
    )
    with pytest.raises(ConfigError, match=r"t\.yaml item 2 \(id 7\): field id: .*string"):
        load_tasks([path])


def test_invalid_default_grader_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.yaml", "grader: {kind: exact, tolerence: 1}\nitems: []\n")
    with pytest.raises(ConfigError, match=r"t\.yaml: default grader: field tolerence"):
        load_tasks([path])


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "t.jsonl",
            '{"id": "a", "prompt": "x", "expected": "x"}\n{"id": \n',
            "line 2: invalid JSON",
        ),
        ("t.jsonl", '["not", "a", "mapping"]\n', "line 1: an item must be a mapping, got list"),
        ("t.yaml", "items:\n  - id: a\n   prompt: [\n", "line 3: invalid YAML"),
        ("t.yaml", "tasks: x\nitems: []\n", "unknown key(s) tasks"),
        ("t.yaml", "task: [x]\nitems: []\n", "field task: must be a string"),
        ("t.yaml", "items: {id: a}\n", "expected a list of items"),
        ("t.yaml", "just text\n", "expected a list of items"),
        ("t.yaml", "items: []\n", "has no items"),
        ("t.jsonl", "\n", "has no items"),
        ("t.csv", "id,prompt\n", "expected .yaml, .yml, .json or .jsonl"),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = _write(tmp_path / name, text)
    with pytest.raises(ConfigError) as caught:
        load_tasks([path])
    assert str(caught.value).startswith(str(path)) or str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_tasks([tmp_path / "nope.yaml"])


def _fake_packs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []

    def load_pack(name: str) -> list[TaskItem]:
        asked.append(name)
        if name != "tiny":
            raise ConfigError(f"unknown task pack {name!r}")
        return [TaskItem(id=f"tiny-{n}", task="tiny", prompt="p", expected="e") for n in range(2)]

    module = types.ModuleType("entrepot.bench.packs")
    module.load_pack = load_pack  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "entrepot.bench.packs", module)
    return asked


def test_pack_entries_are_resolved_by_load_pack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _fake_packs(monkeypatch)
    own = _jsonl(tmp_path / "own.jsonl", {"id": "mine", "prompt": "x", "expected": "x"})
    items = load_tasks(["pack:tiny", own])
    assert asked == ["tiny"]
    assert [(i.id, i.task) for i in items] == [
        ("tiny-0", "tiny"),
        ("tiny-1", "tiny"),
        ("mine", "own"),
    ]
    with pytest.raises(ConfigError, match="unknown task pack 'huge'"):
        load_tasks(["pack:huge"])


def test_pack_and_file_ids_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_packs(monkeypatch)
    own = _jsonl(tmp_path / "own.jsonl", {"id": "tiny-1", "prompt": "x", "expected": "x"})
    with pytest.raises(ConfigError, match=r"'tiny-1': in pack:tiny item 2 .*own\.jsonl line 1"):
        load_tasks(["pack:tiny", own])


def test_an_impossible_date_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.yaml", "items:\n  - {id: a, prompt: x, expected: 2025-13-01}\n")
    with pytest.raises(ConfigError, match=r"t\.yaml line 2: invalid YAML: '2025-13-01' is not"):
        load_tasks([path])
