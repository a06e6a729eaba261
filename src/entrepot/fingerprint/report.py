"""What a take or a check prints (80 columns) and its JSON document."""

from __future__ import annotations

import textwrap
from dataclasses import asdict
from typing import Any

from entrepot.fingerprint.compare import Agreement
from entrepot.fingerprint.session import CheckResult, TakeResult
from entrepot.store.fingerprints import FingerprintRun

WIDTH = 80


def _when(run: FingerprintRun) -> str:
    return run.created_at.strftime("%Y-%m-%d %H:%M UTC")


def _wrapped(label: str, text: str) -> list[str]:
    indent = " " * 19
    return textwrap.wrap(
        text, WIDTH, initial_indent=f"  {label:<16} ", subsequent_indent=indent
    ) or [f"  {label}"]


def take_text(result: TakeResult) -> str:
    run, canaries = result.run, result.canaries
    similarity, exact = result.noise
    lines = [
        f"fingerprint of {run.model_alias} taken {_when(run)}",
        *_wrapped("id", run.id),
        *_wrapped("canary set", f"{run.canary_set}: {run.samples} samples x {canaries} canaries"),
        *_wrapped("deployment", run.deployment or "(not known through a gateway URL)"),
        *_wrapped("self-agreement", f"similarity {similarity:.2f}, exact match {exact:.0%}"),
    ]
    return "\n".join(lines)


def check_text(result: CheckResult) -> str:
    run, take, found = result.run, result.take, result.agreement
    samples = ", ".join(f"{s:.2f}" for s in found.per_sample)
    verdict = ("PROBABLE SUBSTITUTION: " if found.substituted else "same model: ") + found.reason
    lines = [
        f"fingerprint check of {run.model_alias}, {_when(run)}",
        *_wrapped(
            "against", f"the take of {_when(take)} ({take.id}), canary set {take.canary_set}"
        ),
        *_wrapped("deployment", f"take {take.deployment or '?'}; check {run.deployment or '?'}"),
        *_wrapped("exact match", f"{found.exact_share:.0%} (floor {found.floor_exact_share:.0%})"),
        *_wrapped("similarity", f"{found.similarity:.2f} (per check sample: {samples})"),
        *_wrapped(
            "noise floor",
            f"{found.floor:.2f} +/- {found.floor_spread:.2f} (take {found.take_floor:.2f},"
            f" check {found.check_floor:.2f})",
        ),
        *_wrapped("margin", f"{found.margin:.2f} (shortfall {found.shortfall:.2f})"),
        *_wrapped(
            "prompt tokens", f"changed on {found.tokens_changed} of {len(found.canaries)} canaries"
        ),
        *_wrapped("verdict", verdict),
        "",
        _table(found),
    ]
    return "\n".join(lines)


def _table(found: Agreement) -> str:
    heads = "".join(f"  check {j + 1}" for j in range(len(found.per_sample)))
    rows = [f"  {'canary':<28}  self{heads}  tokens"]
    for row in found.canaries:
        cross = "".join(f"  {c:7.2f}" for c in row.cross)
        tokens = "changed" if row.tokens_changed else "same"
        rows.append(f"  {row.canary[:28]:<28}  {row.self_similarity:4.2f}{cross}  {tokens}")
    return "\n".join(rows)


def run_document(run: FingerprintRun) -> dict[str, Any]:
    document = asdict(run)
    document["created_at"] = run.created_at.isoformat()
    return document


def check_document(result: CheckResult) -> dict[str, Any]:
    found = result.agreement
    agreement = asdict(found)
    agreement["canaries"] = [asdict(row) for row in found.canaries]
    return {
        "check": run_document(result.run),
        "take": run_document(result.take),
        "agreement": agreement,
        "similarity_measure": "Jaccard index of character 3-gram sets, whitespace collapsed",
    }


def history_line(run: FingerprintRun) -> str:
    """One run on one line of at most 80 columns: date, kind, and a check's verdict."""
    if run.kind == "take":
        return f"{_when(run)}  take   {run.deployment or '?'}"[:WIDTH]
    verdict = "SUBSTITUTED" if run.substituted else "same"
    found = (
        f"exact {run.exact_share or 0:.0%} sim {run.similarity or 0:.2f} floor {run.floor or 0:.2f}"
    )
    return f"{_when(run)}  check  {verdict:<11} {found}"[:WIDTH]
