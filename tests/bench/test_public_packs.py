"""The public benchmark packs (GSM8K, GPQA Diamond, AIME 2025): their sizes, their references
read the way the data sets' authors read them, graders on answers known to be right or wrong, a
clear error without the data package, and a real run on the bundled model."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from entrepot.bench.graders import grade
from entrepot.bench.packs import PACKS, load_pack, public
from entrepot.bench.runner import RunOptions
from entrepot.bench.schema import TaskItem
from entrepot.bench.session import BenchRequest, run_bench
from entrepot.bench.tasks import load_tasks
from entrepot.config import BUNDLED_ALIAS, Config
from entrepot.exceptions import ConfigError
from entrepot.ledger.hardware import reference

SIZES = {"gsm8k": 1319, "gpqa-diamond": 198, "aime2025": 30}


def _score(item: TaskItem, answer: str) -> float:
    return asyncio.run(grade(item, answer)).score


def _by_id(name: str) -> dict[str, TaskItem]:
    return {item.id: item for item in load_pack(name)}


@pytest.mark.parametrize(("name", "size"), SIZES.items())
def test_each_pack_has_its_data_sets_items_in_order(name: str, size: int) -> None:
    items = load_tasks([f"pack:{name}"])
    assert len(items) == size == PACKS[name].items
    assert len({item.id for item in items}) == size
    assert all(item.task == name and item.expected is not None for item in items)
    assert load_pack(name, seed=3, size=5) == items[:5]  # the seed does not reshuffle a data set
    with pytest.raises(ConfigError, match=rf"pack:{name} has {size} items"):
        load_pack(name, size=size + 1)


def test_gsm8k_reference_is_the_number_after_the_four_hashes() -> None:
    assert public.gsm8k_answer("9 * 2 = <<9*2=18>>18\n#### 18") == 18
    assert public.gsm8k_answer("so 1,450,000 in all\n#### 1,450,000") == 1450000
    assert public.gsm8k_answer("#### -3") == -3
    items = load_pack("gsm8k")
    assert items[0].expected == 18  # Janet's ducks
    assert all(isinstance(item.expected, int) for item in items)


def test_gsm8k_scores_the_last_number_of_the_answer() -> None:
    ducks = load_pack("gsm8k", size=1)[0]
    assert _score(ducks, "16 - 3 - 4 = 9 eggs, sold at $2 each: 9 * 2 = $18.") == 1.0
    assert _score(ducks, "She makes 18 dollars, from 9 eggs.") == 0.0  # the last number is 9
    assert _score(ducks, "She makes $18.00 a day") == 1.0
    assert _score(ducks, "I cannot tell") == 0.0
    big = next(item for item in load_pack("gsm8k") if item.expected == 1450000)
    assert _score(big, "The total is 1,450,000 dollars.") == 1.0
    assert _score(big, "The total is 1,450 dollars.") == 0.0


def test_gpqa_letter_follows_the_shipped_permutation() -> None:
    first = load_pack("gpqa-diamond", size=1)[0]
    text = str(first.chat_messages()[0]["content"])
    assert "C) 10^-4 eV" in text and first.expected == "C"  # the CSV's correct answer
    assert _score(first, "The linewidths are ~1e-6 eV, so...\nAnswer: C") == 1.0
    assert _score(first, "Answer: A") == 0.0
    assert _score(first, "Answer: $LETTER") == 0.0
    prompt = "Q?\n\nA) gamma*Bsin(t)\nB) gamma*B\nC) 2\nD) gamma*B/2"
    assert public.gpqa_letter(prompt, "gamma*B\n") == "B"  # whole choice, whitespace aside
    with pytest.raises(ConfigError, match="matches choices"):
        public.gpqa_letter(prompt, "none of these")
    letters = [item.expected for item in load_pack("gpqa-diamond")]
    assert set(letters) == set("ABCD")


def test_aime_answers_are_integers_matched_exactly() -> None:
    items = _by_id("aime2025")
    assert items["aime2025-I-1"].expected == 70
    assert public.aime_answer("336^\\circ") == 336
    assert all(0 <= int(item.expected) <= 999 for item in items.values())
    first = items["aime2025-I-1"]
    assert _score(first, "The bases are 21 and 49.\nAnswer: 70") == 1.0
    assert _score(first, "Answer: 71") == 0.0
    assert _score(first, "Answer: 70.5") == 0.0


@pytest.fixture
def without_the_data_package(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if `entrepot[datasets]` were not installed."""
    loaders = (public._gsm8k, public._gpqa, public._aime)
    for loader in loaders:
        loader.cache_clear()
    monkeypatch.setitem(sys.modules, public.DATA_PACKAGE, None)
    yield
    for loader in loaders:
        loader.cache_clear()


@pytest.mark.usefixtures("without_the_data_package")
@pytest.mark.parametrize("name", SIZES)
def test_without_the_extra_the_error_says_what_to_install(name: str) -> None:
    with pytest.raises(ConfigError, match=r"pip install 'entrepot\[datasets\]'"):
        load_tasks([f"pack:{name}"])
    assert PACKS[name].items == SIZES[name]  # still listed, with its size


@pytest.mark.usefixtures("without_the_data_package")
def test_the_command_prints_the_install_line_whole(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from entrepot.cli import app

    args = ["bench", "pack:aime2025", "--models", BUNDLED_ALIAS, "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "pip install 'entrepot[datasets]'" in result.output  # not eaten as markup


def test_a_few_gsm8k_items_on_the_bundled_model(tmp_path: Path) -> None:
    """A real run: graded, and costed at the hardware reference's rate and date by default."""
    request = BenchRequest(
        tasks=["pack:gsm8k"],
        models=[BUNDLED_ALIAS],
        reference=BUNDLED_ALIAS,
        options=RunOptions(out=tmp_path, concurrency=1, max_tokens=48),
        limit=3,
    )
    report = run_bench(Config(), request, Console(file=io.StringIO()))
    (summary,) = report.models
    assert summary.items == 3 and summary.graded == 3 and summary.errors == 0
    assert set(summary.per_task) == {"gsm8k"}
    assert all(r.score in (0.0, 1.0) and r.detail for r in report.results)
    assert summary.cost_basis == "hardware" and summary.total_cost > 0
    assert summary.price_date == reference().cpu.as_of.isoformat()
