"""Every listing the terminal prints (models, keys, usage, route explanations, bench, audit,
reconcile and shadow tables), built once and shown three ways: a table, JSON or CSV.

A table never cuts a name or a number: when its columns cannot all be shown whole at the
terminal's width, each row becomes a card, one `column  value` line per field, which the terminal
may wrap but nothing truncates. Numbers are right-aligned. JSON and CSV carry the rows' own
values (numbers as numbers, not as formatted text), for scripts.

Cells are formatted by the caller, with the console's formatters (`api/console/format.py`), so a
cost or a latency reads the same on a page and in a terminal.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

Format = Literal["table", "json", "csv"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv")
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """One column of the table: its heading, the text of a row's cell, and whether it holds a
    number (right-aligned)."""

    heading: str
    cell: Callable[[Row], str]
    numeric: bool = False


@dataclass
class Listing:
    """Rows of plain values (what JSON and CSV print) and the columns a table shows of them."""

    columns: list[Column]
    title: str | None = None
    rows: list[Row] = field(default_factory=list)
    # A rich style for a row of the table (an audit's heat), or "" for none.
    style: Callable[[Row], str] | None = None

    def add(self, row: Row) -> None:
        self.rows.append(row)


def show(listing: Listing, console: Console, fmt: Format = "table") -> None:
    """Print `listing` in `fmt`: JSON and CSV as the raw text, the table whole at any width."""
    if fmt == "json":
        print_json([dict(r) for r in listing.rows], console)
    elif fmt == "csv":
        console.print(_csv(listing), markup=False, highlight=False, soft_wrap=True, end="")
    else:
        _print_table(listing, console)


def print_json(document: Any, console: Console) -> None:
    """`document` as indented JSON, unstyled and unwrapped, so a script can read it."""
    text = json.dumps(document, indent=2, default=_plain, ensure_ascii=False)
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _plain(value: Any) -> Any:
    """JSON for the values rows hold beyond JSON's own: exact decimals and dates as text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _csv(listing: Listing) -> str:
    names = list(dict.fromkeys(name for row in listing.rows for name in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in listing.rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return out.getvalue()


def _csv_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return ";".join(f"{k}={v}" for k, v in value.items())
    return _plain(value) if isinstance(value, Decimal | dt.date) else value


def _print_table(listing: Listing, console: Console) -> None:
    cells = [[column.cell(row) for column in listing.columns] for row in listing.rows]
    widths = [
        max([_width(c.heading)] + [_width(row[i]) for row in cells])
        for i, c in enumerate(listing.columns)
    ]
    # A rounded box takes one character on each side of the table and three between columns.
    if sum(widths) + 3 * len(widths) + 1 <= console.width:
        table = Table(title=listing.title, box=box.ROUNDED)
        for column, width in zip(listing.columns, widths, strict=True):
            justify: Literal["left", "right"] = "right" if column.numeric else "left"
            table.add_column(column.heading, justify=justify, no_wrap=True, min_width=width)
        for row, cells_of_row in zip(listing.rows, cells, strict=True):
            style = listing.style(row) if listing.style else ""
            table.add_row(*(Text(c) for c in cells_of_row), style=style)
        console.print(table)
        return
    _print_cards(listing, cells, console)


def _print_cards(listing: Listing, cells: list[list[str]], console: Console) -> None:
    """Too wide for the terminal: each row as a card, its first cell as the heading."""
    if listing.title:
        console.print(Text(listing.title, style="italic"), soft_wrap=True)
    label = max(_width(c.heading) for c in listing.columns[1:]) if len(listing.columns) > 1 else 0
    for row, texts in zip(listing.rows, cells, strict=True):
        style = listing.style(row) if listing.style else ""
        console.print(Text(texts[0], style=f"bold {style}".strip()), soft_wrap=True)
        for column, cell in zip(listing.columns[1:], texts[1:], strict=True):
            for i, line in enumerate(cell.splitlines() or [""]):
                heading = column.heading if i == 0 else ""
                console.print(Text(f"  {heading:<{label}}  {line}"), soft_wrap=True)
        console.print()


def _width(text: str) -> int:
    return max((cell_len(line) for line in text.splitlines()), default=0)
