"""Listings: whole cells at any width (a table, else cards), and the same rows as JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from rich.console import Console

from entrepot.listing import Column, Format, Listing, show

NAMES = [
    "local/smollm2-135m-instruct",
    "local/smollm2-135m-instruct-q8",
    "local/smollm2-135m-instruct-long-context",
]


def _listing() -> Listing:
    return Listing(
        [
            Column("model", lambda r: r["model"]),
            Column("cost per item", lambda r: f"${r['cost']}", numeric=True),
            Column("why", lambda r: r["why"]),
        ],
        rows=[
            {"model": name, "cost": Decimal("0.00042"), "why": "allowed: data class permits"}
            for name in NAMES
        ],
    )


def _shown(listing: Listing, width: int, fmt: Format = "table") -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    show(listing, console, fmt)
    return console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [40, 80, 160])
def test_every_name_and_number_is_whole_at_any_width(width: int) -> None:
    out = _shown(_listing(), width)
    assert "…" not in out
    lines = out.splitlines()
    for name in NAMES:
        assert any(name in line for line in lines), out
    assert any("$0.00042" in line for line in lines)
    assert any("allowed: data class permits" in line for line in lines)


def test_a_wide_terminal_gets_a_table_with_numbers_on_the_right() -> None:
    out = _shown(_listing(), 160)
    row = next(line for line in out.splitlines() if NAMES[0] + " " in line)
    cost = row.split("│")[2]
    assert cost.endswith("$0.00042 ") and cost.startswith("  ")


def test_a_narrow_terminal_gets_one_card_per_row() -> None:
    out = _shown(_listing(), 60)
    assert "│" not in out
    assert out.splitlines()[0] == NAMES[0]
    assert "  cost per item  $0.00042" in out


def test_json_and_csv_carry_the_values() -> None:
    rows = json.loads(_shown(_listing(), 80, "json"))
    assert [r["model"] for r in rows] == NAMES
    assert rows[0]["cost"] == "0.00042"
    read = list(csv.DictReader(io.StringIO(_shown(_listing(), 80, "csv"))))
    assert [r["model"] for r in read] == NAMES
    assert read[2]["why"] == "allowed: data class permits"
