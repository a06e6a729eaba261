"""`entrepot usage`: the usage ledger summarised by key, model or day, each cost in its own
currency."""

from __future__ import annotations

from typing import Annotated

import typer

from entrepot.cli.common import TABLE, ConfigOption, FormatOption, console, load, output_format
from entrepot.ledger.display import count as fmt_count
from entrepot.ledger.display import money
from entrepot.ledger.pricing import nanos_to_amount
from entrepot.listing import Column, Listing, Row, show
from entrepot.store.db import open_engine
from entrepot.store.usage import summarise


def usage(
    by: Annotated[str, typer.Option("--by", help="Group by key, model or day.")] = "model",
    config_path: ConfigOption = None,
    fmt: FormatOption = TABLE,
) -> None:
    """Summarise the usage ledger."""
    if by not in ("key", "model", "day"):
        console.print("[red]--by must be key, model or day[/red]")
        raise typer.Exit(2)
    rows = summarise(open_engine(load(config_path).store), by)  # type: ignore[arg-type]
    listing = Listing(
        [
            Column(by, lambda r: r["group"]),
            Column("requests", lambda r: fmt_count(r["requests"]), numeric=True),
            Column("failed", lambda r: fmt_count(r["failed"]), numeric=True),
            Column("prompt tokens", lambda r: fmt_count(r["prompt_tokens"]), numeric=True),
            Column("completion tokens", lambda r: fmt_count(r["completion_tokens"]), numeric=True),
            Column("cost", _costs_text, numeric=True),
        ]
    )
    for row in rows:
        listing.add(
            {
                "group": row.group,
                "requests": row.requests,
                "failed": row.failed,
                "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens,
                "cost": {c: nanos_to_amount(n) for c, n in sorted(row.cost_nanos.items())},
            }
        )
    show(listing, console, output_format(fmt))


def _costs_text(row: Row) -> str:
    return ", ".join(money(float(amount), c) for c, amount in row["cost"].items()) or "—"
