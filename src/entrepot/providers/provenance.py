"""What is known about a configured local model's files, for the commands that show it
(`entrepot models`, `entrepot models lineage`, `entrepot models add`): each file's digest, whether
it is the one declared, what its GGUF header says, and whether the declared licence contradicts
the file's. Serving checks the same digests in `weights.verify` before loading."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from entrepot.config import ModelConfig
from entrepot.exceptions import ConfigError
from entrepot.providers.gguf_header import GGUFHeader, read_header
from entrepot.providers.local_generation import resolve_adapter, resolve_weights
from entrepot.providers.weights import licence_conflict, matches, sha256_of

SHORT = 12  # hex digits of a digest shown where space is short


@dataclass(frozen=True, slots=True)
class FileFacts:
    path: Path
    sha256: str
    declared: str | None
    header: GGUFHeader

    @property
    def verified(self) -> bool:
        """The file is the one the configuration declares (or nothing is declared)."""
        return matches(self.declared, self.sha256)

    @property
    def short(self) -> str:
        """The digest's first hex digits, marked when it is not the declared one."""
        return self.sha256[:SHORT] + ("" if self.verified else " ≠ declared")


@dataclass(frozen=True, slots=True)
class LocalFacts:
    """A llama_cpp model's weights, and the LoRA adapter applied to them if it has one."""

    weights: FileFacts
    adapter: FileFacts | None

    @property
    def served(self) -> FileFacts:
        """The file that makes this alias what it is: its adapter, else its weights."""
        return self.adapter or self.weights

    @property
    def quantisation(self) -> str:
        base = self.weights.header.quantisation or "?"
        return f"{base}+LoRA" if self.adapter is not None else base

    @property
    def file_licence(self) -> str | None:
        return self.served.header.licence

    def licence_contradicted(self, model: ModelConfig) -> bool:
        return licence_conflict(model.licence, self.file_licence)


def file_facts(path: Path, declared: str | None) -> FileFacts:
    return FileFacts(path, sha256_of(path), declared, read_header(path))


def local_facts(model: ModelConfig) -> LocalFacts | None:
    """The facts of a llama_cpp model's files (None for any other provider). A missing or
    unreadable file is a `ConfigError` naming it."""
    if model.provider != "llama_cpp":
        return None
    weights = file_facts(resolve_weights(model.target), model.weights_sha256)
    adapter_path = resolve_adapter(model.adapter)
    adapter = file_facts(adapter_path, model.adapter_sha256) if adapter_path else None
    return LocalFacts(weights, adapter)


def listing_row(model: ModelConfig) -> dict[str, str | None]:
    """What a list of models shows of a model's provenance: its files' digests, the first
    digits of the one that makes the alias what it is (its adapter's, else its weights'), and
    its quantisation. A remote model has none; a missing or unreadable file says so."""
    try:
        facts = local_facts(model)
    except ConfigError:
        facts, shown = None, "file unreadable"
    else:
        shown = facts.served.short if facts is not None else ""
    return {
        "weights_sha256": facts.weights.sha256 if facts else None,
        "adapter_sha256": facts.adapter.sha256 if facts and facts.adapter else None,
        "sha256_shown": shown,
        "quantisation": facts.quantisation if facts else None,
    }
