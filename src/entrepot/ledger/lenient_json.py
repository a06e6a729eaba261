"""Quarantine entries as JSON lines, whatever they hold: a record may have been rejected for
precisely a value that strict encoders refuse (a lone surrogate, an odd type), and the
quarantine must still keep it readable."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any


def lenient_json(entry: dict[str, Any]) -> bytes:
    """A quarantine entry as one JSON line, whatever the record holds: it may have been rejected
    precisely for a value that strict encoders refuse (a lone surrogate, an odd type)."""
    try:
        text = json.dumps(entry, default=_plain, ensure_ascii=True)
    except (TypeError, ValueError):
        text = json.dumps({**entry, "record": repr(entry.get("record"))}, default=_plain)
    return text.encode()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return repr(value)
