"""Probe packs: the shipped ones (one YAML file per jurisdiction, in this folder, versioned in
the file) and a team's own files, which may `extends:` a shipped pack to add topics.

Everything wrong with a pack is found here, before any model is asked, and the error names the
file and the probe.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from entrepot.audit.schema import Pack, Probe
from entrepot.config import CheckedLoader
from entrepot.exceptions import ConfigError

SHIPPED = Path(__file__).parent


def shipped_packs() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def _read(path: Path) -> Pack:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=CheckedLoader)
    except FileNotFoundError:
        raise ConfigError(f"probe pack {path} not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    try:
        return Pack.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ConfigError(f"{path}: {problems}") from None


def _check(pack: Pack, where: str) -> Pack:
    seen: set[str] = set()
    probes: list[tuple[str, Probe]] = [
        (f"topic {topic.id}", probe) for topic in pack.topics for probe in topic.probes
    ] + [("controls", probe) for probe in pack.controls]
    if not pack.topics:
        raise ConfigError(f"{where}: a pack needs at least one topic")
    if not pack.controls:
        raise ConfigError(f"{where}: a pack needs control questions to correct its rates")
    topics = [t.id for t in pack.topics]
    if len(set(topics)) != len(topics):
        raise ConfigError(f"{where}: topic ids must be unique")
    for place, probe in probes:
        if probe.id in seen:
            raise ConfigError(f"{where}: {place}: probe id {probe.id!r} is used twice")
        seen.add(probe.id)
        missing = [lang for lang in pack.languages if lang not in probe.phrasings]
        if missing:
            raise ConfigError(
                f"{where}: {place}: probe {probe.id!r} has no phrasing in {', '.join(missing)}"
            )
        for language, phrasing in probe.phrasings.items():
            question = phrasing.question.casefold()
            for number, fact in enumerate(phrasing.key_facts, 1):
                given = next((w for w in fact if w.casefold() in question), None)
                if given is not None:
                    raise ConfigError(
                        f"{where}: {place}: probe {probe.id!r} ({language}): key fact {number}"
                        f" wording {given!r} is in the question itself, so an answer that"
                        " repeats the question would count as stating it"
                    )
    return pack


def load_pack(ref: str) -> Pack:
    """A shipped pack by name (`cn`), or a YAML file by path; `extends` is resolved here."""
    path = Path(ref)
    shipped = SHIPPED / f"{ref}.yaml"
    if path.suffix in (".yaml", ".yml"):
        pack = _read(path)
    elif shipped.exists():
        pack = _read(shipped)
    else:
        raise ConfigError(
            f"unknown probe pack {ref!r}; shipped packs: {', '.join(shipped_packs())},"
            " or give a .yaml file"
        )
    if pack.extends is not None:
        if pack.extends == pack.name or pack.extends == ref:
            raise ConfigError(f"{ref}: a pack cannot extend itself")
        try:
            base = load_pack(pack.extends)
        except ConfigError as exc:
            raise ConfigError(f"{ref}: extends: {exc}") from None
        missing = [lang for lang in pack.languages if lang not in base.languages]
        if missing:
            raise ConfigError(
                f"{ref}: extends {base.name}, which has no {', '.join(missing)} phrasings"
            )
        pack = pack.model_copy(
            update={
                "topics": base.topics + pack.topics,
                "controls": base.controls + pack.controls,
            }
        )
    return _check(pack, ref)
