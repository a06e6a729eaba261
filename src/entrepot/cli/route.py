"""`entrepot route`: where a request would go and why, decided by the same policy and routing
code that serves it, shown as a table, JSON or CSV."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from entrepot.cli.common import TABLE, ConfigOption, FormatOption, console, load, output_format
from entrepot.ledger.display import count as fmt_count
from entrepot.ledger.display import money
from entrepot.listing import Column, Format, Listing, Row, print_json, show
from entrepot.store.db import open_engine
from entrepot.store.keys import KeyStore

if TYPE_CHECKING:
    from entrepot.policy.explain import RouteExplanation


def route(
    model: Annotated[str, typer.Option("--model", "-m", help="The alias to route.")],
    explain: Annotated[bool, typer.Option("--explain", help="Show every candidate.")] = True,
    key_name: Annotated[str | None, typer.Option("--key", help="Key name to route for.")] = None,
    message: Annotated[str, typer.Option(help="Sample user message.")] = "Hello",
    request_file: Annotated[
        Path | None, typer.Option("--request", help="Sample request body (JSON file).")
    ] = None,
    data_class: Annotated[str | None, typer.Option(help="As the data-class header.")] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="As the x-entrepot-task header.")
    ] = None,
    offline: Annotated[bool, typer.Option("--offline")] = False,
    config_path: ConfigOption = None,
    fmt: FormatOption = TABLE,
) -> None:
    """Explain where a request would go, and why each deployment is admitted or rejected; for a
    good_enough route, the evidence each candidate was judged on."""
    import orjson

    from entrepot.policy.detector import PiiDetector
    from entrepot.policy.egress import EgressPolicy
    from entrepot.policy.explain import explain_route
    from entrepot.routing.good_enough import board_for
    from entrepot.routing.router import Router
    from entrepot.routing.table import RoutingTable

    config = load(config_path)
    engine = open_engine(config.store)
    board = board_for(config, engine)
    if board is not None:
        board.load_now()
    key = None
    if key_name is not None:
        store = KeyStore(engine)
        key = next((k for k in store.list() if k.name == key_name), None)
        if key is None:
            console.print(f"[red]no active key named {key_name!r}[/red]")
            raise typer.Exit(1)
    if request_file is not None:
        body = orjson.loads(request_file.read_bytes())
    else:
        body = {"model": model, "messages": [{"role": "user", "content": message}]}
    result = explain_route(
        config=config,
        table=RoutingTable(config, board),
        router=Router(config),
        detector=PiiDetector(config.policy.detector),
        egress=EgressPolicy(config.policy, config.teams),
        key=key,
        alias=model,
        body=body,
        class_header=data_class,
        task_header=task,
        offline=offline or config.policy.offline,
    )
    _print_explanation(result, output_format(fmt))


def _print_explanation(result: RouteExplanation, fmt: Format) -> None:
    """The route's verdict, its candidates, and for good_enough the evidence; as JSON the whole
    explanation, as CSV the candidates (and the evidence after a blank line)."""
    if fmt == "json":
        print_json(dataclasses.asdict(result), console)
        return
    candidates = Listing(
        [
            Column("deployment", lambda r: r["deployment"]),
            Column("order", lambda r: str(r["order"] or "—"), numeric=True),
            Column("alias", lambda r: r["alias"]),
            Column("jurisdiction", lambda r: r["jurisdiction"]),
            Column("admitted", lambda r: "yes" if r["admitted"] else "no"),
            Column("why", lambda r: r["reason"]),
            Column("circuit", lambda r: r["circuit"]),
        ],
        rows=[dataclasses.asdict(row) for row in result.candidates],
    )
    evidence = _evidence_listing(result) if result.strategy == "good_enough" else None
    if fmt == "csv":
        show(candidates, console, fmt)
        if evidence is not None:
            console.print()
            show(evidence, console, fmt)
        return
    found = ", ".join(f"{k}×{n}" for k, n in result.findings.items()) or "none"
    served = "refused" if result.refusal else f"served as [bold]{escape(result.alias)}[/bold]"
    console.print(
        f"model [bold]{escape(result.requested)}[/bold] → {served}; data class"
        f" [bold]{result.data_class or '—'}[/bold]; detector findings: {found};"
        f" strategy {result.strategy}"
    )
    show(candidates, console)
    if evidence is not None:
        show(evidence, console)
    for note in result.notes:
        console.print(f"note: {escape(note)}")
    if result.refusal is not None:
        refusal = result.refusal
        console.print(
            f"[red]refused: {refusal.status} {refusal.code}[/red] — {escape(refusal.message)}",
            highlight=False,
        )


def _evidence_listing(result: RouteExplanation) -> Listing:
    """A good_enough route's candidates: the evidence each was judged on, and the verdict."""
    return Listing(
        [
            Column("candidate", lambda r: r["alias"]),
            Column("chosen", lambda r: "yes" if r["chosen"] else "no"),
            Column("score (95% CI)", lambda r: _interval(r, "score"), numeric=True),
            Column("vs reference (95% CI)", lambda r: _interval(r, "relative"), numeric=True),
            Column("items", lambda r: "—" if r["items"] is None else fmt_count(r["items"]),
                   numeric=True),
            Column("published", lambda r: r["published"] or "—"),
            Column("cost/item", _cost_per_item, numeric=True),
            Column("why", lambda r: r["reason"]),
        ],
        title=f"good_enough for task {result.task or '— (none)'}",
        rows=[dataclasses.asdict(row) for row in result.evidence],
    )  # fmt: skip


def _interval(row: Row, name: str) -> str:
    if row[name] is None:
        return "—"
    return f"{row[name]:.3f} ({row[name + '_low']:.3f}–{row[name + '_high']:.3f})"


def _cost_per_item(row: Row) -> str:
    if row["cost_per_item"] is None:
        return "—"
    cost = money(row["cost_per_item"], row["currency"] or "USD")
    return f"{cost} ({row['price_date'] or 'undated'})"
