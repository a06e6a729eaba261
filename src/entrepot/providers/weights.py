"""Which exact bytes answer: the SHA-256 of a local model's weights (and of its LoRA adapter),
checked against the configuration before the weights are loaded.

Hashing a multi-gigabyte file takes seconds to minutes, so a file's digest is kept in a small
cache in the data directory, keyed by its path, size, modification time, inode and inode change
time: a file written in place or replaced changes one of them and is hashed again. The change
time is there because no user can set it back, as `touch` can the modification time. The cache
is a file per machine, not a table in the shared store, because those facts hold only for the
machine that read them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from entrepot.config import ModelConfig
from entrepot.exceptions import WeightsMismatchError
from entrepot.store.db import data_directory

WEIGHTS_HEADER = "x-entrepot-weights-sha256"
ADAPTER_HEADER = "x-entrepot-adapter-sha256"
CACHE_NAME = "weights-sha256.json"
_CHUNK = 1 << 20

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Provenance:
    """The digests of what a deployment serves, and the response headers that say so, made
    once when the deployment starts so a request only copies them."""

    weights_sha256: str | None = None
    adapter_sha256: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, weights: str, adapter: str | None) -> Provenance:
        headers = {WEIGHTS_HEADER: weights}
        if adapter is not None:
            headers[ADAPTER_HEADER] = adapter
        return cls(weights, adapter, headers)

    def label(self, headers: dict[str, str]) -> None:
        """Say in a response's `headers` what answered, replacing what an earlier attempt at
        another deployment said there. Every answer passes here: a remote model's costs one
        lookup."""
        if WEIGHTS_HEADER in headers:
            del headers[WEIGHTS_HEADER]
            headers.pop(ADAPTER_HEADER, None)
        if self.headers:
            headers.update(self.headers)


UNKNOWN = Provenance()


def provenance_of(provider: object) -> Provenance:
    """What a deployment's provider serves: local weights know their digests; a remote model's
    are unknown (its provider has no `provenance`)."""
    found = getattr(provider, "provenance", None)
    return found if isinstance(found, Provenance) else UNKNOWN


def sha256_of(path: Path) -> str:
    """The file's SHA-256, from the cache when the file is unchanged since it was hashed."""
    stat = path.stat()
    key = str(path.resolve())
    stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns]
    cache = _load_cache()
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        return str(entry["sha256"])
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    found = digest.hexdigest()
    cache[key] = {"stamp": stamp, "sha256": found}
    _save_cache(cache)
    return found


def verify(config: ModelConfig, weights: Path, adapter: Path | None) -> Provenance:
    """The deployment's provenance, after checking each file against the digest the
    configuration declares for it; a file that does not match is refused, not loaded."""
    weights_sha = sha256_of(weights)
    _check(config, "weights", weights, weights_sha, config.weights_sha256)
    adapter_sha = None
    if adapter is not None:
        adapter_sha = sha256_of(adapter)
        _check(config, "adapter", adapter, adapter_sha, config.adapter_sha256)
    return Provenance.of(weights_sha, adapter_sha)


def matches(declared: str | None, found: str) -> bool:
    """Whether a file with digest `found` is the one declared (anything is, if none is)."""
    return declared is None or declared == found


def _check(config: ModelConfig, what: str, path: Path, found: str, declared: str | None) -> None:
    if declared is None or matches(declared, found):
        return
    raise WeightsMismatchError(
        f"model {config.alias} is not served: its {what} file {path} has SHA-256"
        f" {found[:16]}…, but the configuration declares {declared[:16]}…; the file was"
        " changed or replaced since it was registered. Restore the registered file, or"
        " register this one again (entrepot models add) if the change was intended"
    )


def _cache_path() -> Path:
    return data_directory() / CACHE_NAME


def _load_cache() -> dict[str, object]:
    try:
        loaded = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _save_cache(cache: dict[str, object]) -> None:
    """Written whole and renamed into place: processes starting together may race, and the
    loser's entries are merely hashed again next time, never read half-written."""
    target = _cache_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".weights-")
    except OSError as exc:
        logger.warning("could not keep the weights digest cache at %s: %s", target, exc)
        return
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(cache, file)
        os.replace(temporary, target)
    except OSError as exc:
        logger.warning("could not keep the weights digest cache at %s: %s", target, exc)
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def licence_conflict(declared: str | None, in_file: str | None) -> bool:
    """Whether the configuration's licence contradicts the one the file declares. Spelling is
    not a contradiction (`Apache-2.0`, `apache 2.0`); a missing side is not one either."""
    if not declared or not in_file:
        return False
    return _spelled(declared) != _spelled(in_file)


def _spelled(licence: str) -> str:
    return "".join(c for c in licence.lower() if c.isalnum() or c == ".")
