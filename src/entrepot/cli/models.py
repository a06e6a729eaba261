"""`entrepot models`: the configured models (listed by `cli/model_list.py`), `models add` to
register a local GGUF model or LoRA adapter with its lineage, and `models lineage` to draw the
tree of bases, derivatives and adapters with their digests and licences.

Registrations are written into the configuration file (see `cli/config_file.py` for why), with
the file's SHA-256, which serving then checks before loading it."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.tree import Tree

from entrepot.cli.common import TABLE, ConfigOption, FormatOption, console, load, output_format
from entrepot.cli.config_file import add_model
from entrepot.cli.model_list import models as list_models
from entrepot.config import Config, ModelConfig
from entrepot.exceptions import ConfigError
from entrepot.listing import Listing, show
from entrepot.providers.gguf_header import GGUFHeader
from entrepot.providers.provenance import SHORT, FileFacts, file_facts, local_facts
from entrepot.providers.weights import licence_conflict

Derivation = Literal["quantised", "fine-tuned", "lora", "merged"]


def _list_without_subcommand(ctx: typer.Context, **options: Any) -> None:
    """`entrepot models` alone lists the models; with a subcommand, the subcommand runs."""
    if ctx.invoked_subcommand is None:
        list_models(**options)


# The listing's own options (`--config`, `--format`, …) are this callback's: its signature is
# the listing's, with the context first, so the two cannot drift apart.
_listing = inspect.signature(list_models, eval_str=True)
_context = inspect.Parameter(
    "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
)
_list_without_subcommand.__signature__ = _listing.replace(  # type: ignore[attr-defined]
    parameters=[_context, *_listing.parameters.values()]
)

models_app = typer.Typer(
    help="Show the configured models; register local models and adapters; draw their lineage.",
    callback=_list_without_subcommand,
    invoke_without_command=True,
)


@models_app.command("add")
def add(
    path: Annotated[
        Path, typer.Argument(help="The GGUF file: model weights or a LoRA adapter.", exists=True)
    ],
    alias: Annotated[str, typer.Option("--alias", help="The name clients will ask for.")],
    base: Annotated[
        str | None, typer.Option("--base", help="The configured alias it was derived from.")
    ] = None,
    derivation: Annotated[
        Derivation | None,
        typer.Option("--derivation", help="How: quantised, fine-tuned, lora or merged."),
    ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="What it was tuned on.")] = None,
    licence: Annotated[
        str | None, typer.Option("--licence", help="Its licence (default: the file's own).")
    ] = None,
    notes: Annotated[str | None, typer.Option("--notes", help="Anything else to keep.")] = None,
    config_path: ConfigOption = None,
) -> None:
    """Register a local GGUF model or LoRA adapter in the configuration file.

    The file's SHA-256 and lineage are written with it; the configuration file is created if
    missing."""
    file = config_path or (
        Path(os.environ["ENTREPOT_CONFIG"]) if os.environ.get("ENTREPOT_CONFIG") else None
    )
    if file is None:
        console.print(
            "[red]say which configuration file to register the model in:[/red] --config"
            " entrepot.yaml (created if missing), or set ENTREPOT_CONFIG"
        )
        raise typer.Exit(2)
    config = load(file) if file.exists() else Config()
    lineage = {"base": base, "derivation": derivation, "dataset": dataset, "notes": notes}
    try:
        entry, facts = registration(config, path.resolve(), alias, licence, lineage)
        add_model(file, entry)
    except ConfigError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    what = "LoRA adapter" if facts.header.is_adapter else "model"
    console.print(f"registered {what} [bold]{escape(alias)}[/bold] in {escape(str(file))}")
    console.print(f"  sha256 {facts.sha256}")
    console.print(f"  GGUF   {escape(describe(facts.header))}")
    if licence_conflict(licence, facts.header.licence):
        console.print(_licence_warning(licence, facts.header.licence))


def registration(
    config: Config,
    path: Path,
    alias: str,
    licence: str | None,
    lineage: dict[str, str | None],
) -> tuple[dict[str, Any], FileFacts]:
    """The configuration entry registering the file at `path`, and the file's facts. A LoRA
    adapter is served on its base's weights, whose digest it pins too."""
    if config.model(alias) is not None:
        raise ConfigError(f"{alias!r} is already configured; choose another --alias")
    base_name, derivation = lineage["base"], lineage["derivation"]
    base = config.model(base_name) if base_name else None
    if base_name and base is None:
        known = ", ".join(m.alias for m in config.models)
        raise ConfigError(f"--base {base_name!r} is not a configured alias (configured: {known})")
    facts = file_facts(path, None)
    entry: dict[str, Any] = {"alias": alias, "provider": "llama_cpp"}
    if facts.header.is_adapter:
        entry |= _adapter_entry(facts, base, derivation)
        lineage = {**lineage, "derivation": "lora"}
    else:
        if base is not None and derivation is None:
            raise ConfigError(
                f"say how {alias} was derived from {base.alias}:"
                " --derivation quantised, fine-tuned or merged"
            )
        if derivation == "lora":
            raise ConfigError(
                f"{path} is a whole model, not a LoRA adapter: a LoRA merged into its base's"
                " weights is --derivation merged"
            )
        entry |= {"target": str(path), "weights_sha256": facts.sha256}
    if licence or facts.header.licence:
        entry["licence"] = licence or facts.header.licence
    kept = {key: value for key, value in lineage.items() if value}
    if kept:
        entry["lineage"] = kept
    return entry, facts


def _adapter_entry(
    facts: FileFacts, base: ModelConfig | None, derivation: str | None
) -> dict[str, Any]:
    header = facts.header
    if header.adapter_type != "lora":
        raise ConfigError(f"{facts.path} is a {header.adapter_type} adapter; only LoRA is served")
    if base is None or base.provider != "llama_cpp":
        raise ConfigError(
            f"{facts.path} is a LoRA adapter, served on top of its base model:"
            " give --base, the alias of a local (llama_cpp) model"
        )
    if derivation not in (None, "lora"):
        raise ConfigError(f"{facts.path} is a LoRA adapter: its derivation is lora")
    base_facts = local_facts(base)
    assert base_facts is not None  # a llama_cpp model has files
    weights = base_facts.weights
    if not weights.verified:
        raise ConfigError(
            f"{base.alias}'s weights file {weights.path} is not the one its configuration"
            " declares; an adapter cannot be registered on it"
        )
    if weights.header.architecture != header.architecture:
        raise ConfigError(
            f"{facts.path} adapts a {header.architecture} model, and {base.alias} is"
            f" {weights.header.architecture}"
        )
    return {
        "target": base.target,
        "weights_sha256": weights.sha256,
        "adapter": str(facts.path),
        "adapter_sha256": facts.sha256,
    }


@models_app.command("lineage")
def lineage(
    alias: Annotated[
        str | None, typer.Argument(help="Only this model's ancestors and descendants.")
    ] = None,
    config_path: ConfigOption = None,
    fmt: FormatOption = TABLE,
) -> None:
    """Draw the tree of bases, derivatives and adapters.

    Each model with its files' SHA-256, what its GGUF header says, its licence (flagged where
    it contradicts the file's) and how it was derived. JSON and CSV give one row per model,
    naming its base."""
    config = load(config_path)
    if alias is not None and config.model(alias) is None:
        console.print(f"[red]{escape(alias)!r} is not a configured alias[/red]")
        raise typer.Exit(2)
    shown = _family(config, alias)
    chosen = output_format(fmt)
    if chosen != "table":
        show(Listing([], rows=[_row(m) for m in shown]), console, chosen)
        return
    names = {m.alias for m in shown}
    for model in shown:
        if _base_of(model) not in names:
            console.print(_tree(model, shown))


def _row(model: ModelConfig) -> dict[str, Any]:
    """A model's provenance as plain values, for scripts."""
    lineage = model.lineage
    row: dict[str, Any] = {
        "alias": model.alias,
        "base": lineage.base if lineage else None,
        "derivation": lineage.derivation if lineage else None,
        "dataset": lineage.dataset if lineage else None,
        "notes": lineage.notes if lineage else None,
        "licence": model.licence,
    }
    try:
        facts = local_facts(model)
    except ConfigError as exc:
        return row | {"error": str(exc)}
    if facts is None:
        return row
    header = facts.weights.header
    return row | {
        "weights_sha256": facts.weights.sha256,
        "weights_verified": facts.weights.verified,
        "adapter_sha256": facts.adapter.sha256 if facts.adapter else None,
        "adapter_verified": facts.adapter.verified if facts.adapter else None,
        "architecture": header.architecture,
        "parameters": header.parameters,
        "quantisation": facts.quantisation,
        "context_length": header.context_length,
        "chat_template_sha256": header.chat_template_sha256,
        "file_licence": facts.file_licence,
        "licence_contradicted": facts.licence_contradicted(model),
    }


def _base_of(model: ModelConfig) -> str | None:
    return model.lineage.base if model.lineage else None


def _family(config: Config, alias: str | None) -> list[ModelConfig]:
    """The models the tree shows: every local or derived one; or, for one alias, its
    ancestors and all its descendants."""
    if alias is None:
        return [m for m in config.models if m.provider == "llama_cpp" or m.lineage]
    ancestors: set[str] = set()
    name: str | None = alias
    while name is not None and name not in ancestors:
        ancestors.add(name)
        model = config.model(name)
        name = _base_of(model) if model else None
    descendants = {alias}
    while grown := {m.alias for m in config.models if _base_of(m) in descendants} - descendants:
        descendants |= grown
    return [m for m in config.models if m.alias in ancestors | descendants]


def _tree(root: ModelConfig, shown: list[ModelConfig]) -> Tree:
    tree = Tree(_label(root))
    for child in shown:
        if child is not root and _base_of(child) == root.alias:
            tree.children.append(_tree(child, shown))
    return tree


def _label(model: ModelConfig) -> str:
    """A node: the alias and how it was derived, then one line per fact."""
    lineage = model.lineage
    heading = f"[bold]{escape(model.alias)}[/bold]"
    if lineage is not None and lineage.base is not None:
        heading += f"  {lineage.derivation or 'derived'} from {escape(lineage.base)}"
    lines = [heading]
    try:
        facts = local_facts(model)
    except ConfigError as exc:
        facts = None
        lines.append(f"[red]{escape(str(exc))}[/red]")
    if model.provider != "llama_cpp":
        lines.append(f"served by {model.provider}: {escape(model.target)}")
    if facts is not None:
        lines.append(_digest_line("weights", facts.weights))
        if facts.adapter is not None:
            lines.append(_digest_line("adapter", facts.adapter))
        lines.append(f"GGUF     {escape(describe(facts.served.header))}")
    lines.append(f"licence  {escape(model.licence or '(none declared)')}")
    if facts is not None and facts.licence_contradicted(model):
        lines.append(_licence_warning(model.licence, facts.file_licence))
    if lineage is not None and lineage.dataset:
        lines.append(f"dataset  {escape(lineage.dataset)}")
    if lineage is not None and lineage.notes:
        lines.append(f"notes    {escape(lineage.notes)}")
    return "\n".join(lines)


def _digest_line(what: str, facts: FileFacts) -> str:
    line = f"{what:<8} {facts.sha256}"
    if not facts.verified:
        line += f"\n[red]≠ declared {facts.declared}: refused when served[/red]"
    return line


def _licence_warning(declared: str | None, in_file: str | None) -> str:
    return (
        f"[yellow]⚠ the declared licence {escape(declared or '')!r} contradicts the file's"
        f" own (general.license: {escape(in_file or '')!r})[/yellow]"
    )


def describe(header: GGUFHeader) -> str:
    """One line of what a GGUF header says."""
    if header.is_adapter:
        parts = [
            f"LoRA adapter for {header.architecture}",
            f"{_count(header.parameters)} params",
        ]
        parts.append(header.quantisation or "?")
        if header.lora_alpha is not None:
            parts.append(f"alpha {header.lora_alpha:g}")
        return " · ".join(parts)
    parts = [
        header.architecture or "unknown architecture",
        f"{_count(header.parameters)} params",
        header.quantisation or "?",
    ]
    if header.context_length is not None:
        parts.append(f"ctx {header.context_length:,}")
    if header.chat_template_sha256 is not None:
        parts.append(f"template {header.chat_template_sha256[:SHORT]}")
    return " · ".join(parts)


def _count(parameters: int) -> str:
    for size, unit in ((10**9, "B"), (10**6, "M")):
        if parameters >= size:
            return f"{parameters / size:.1f}{unit}"
    return f"{parameters:,}"
