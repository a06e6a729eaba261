"""What OpenAI-compatible servers get wrong in their answers, set right before a client sees it.

- Streamed tool calls: llama.cpp's server repeats the call's name, id and type in every delta, so
  a client that appends deltas (as OpenAI's own SDKs do) reads `get_weatherget_weather…`. Some
  servers leave out a delta's `index`; others send a whole call in one delta. OpenAI's shape is
  restored: per choice and call index, the name, id and type come only in the first delta, later
  ones carry arguments only, and a delta without an index gets one (a new id opens the next call;
  a delta without an id continues the last one, or takes its place in the list).
- `n` ignored: a server that answers one choice however many were asked for. The provider asks
  again for the missing ones; `merged_usage` adds up what those calls used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from entrepot.types import JSON


@dataclass(slots=True)
class _ChoiceCalls:
    opened: set[int] = field(default_factory=set)  # call indices whose first delta went out
    ids: dict[str, int] = field(default_factory=dict)
    latest: int | None = None


class ToolCallDeltas:
    """One stream's tool-call deltas, rewritten in place; built at the first delta that has any."""

    __slots__ = ("_choices",)

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceCalls] = {}

    def fix(self, choice: int, calls: object) -> None:
        if not isinstance(calls, list):
            return
        state = self._choices.get(choice)
        if state is None:
            state = self._choices[choice] = _ChoiceCalls()
        for position, call in enumerate(calls):
            if not isinstance(call, dict):
                continue
            index = call.get("index")
            if not isinstance(index, int) or isinstance(index, bool):
                index = call["index"] = _index_of(state, call.get("id"), position)
            if index in state.opened:
                call.pop("id", None)
                call.pop("type", None)
                function = call.get("function")
                if isinstance(function, dict):
                    function.pop("name", None)
            else:
                state.opened.add(index)
                if isinstance(call.get("id"), str):
                    state.ids[call["id"]] = index
            state.latest = index


def _index_of(state: _ChoiceCalls, call_id: object, position: int) -> int:
    if isinstance(call_id, str):
        known = state.ids.get(call_id)
        if known is not None:
            return known
        return max(state.opened, default=-1) + 1
    return position if state.latest is None else state.latest


def merged_usage(usages: list[Any]) -> JSON | None:
    """The usage of several calls added up, nested counts included; None if any call reported
    none, since a partial sum would under-bill (the gateway then counts the answer itself)."""
    if not all(isinstance(usage, dict) for usage in usages):
        return None
    total: JSON = {}
    for usage in usages:
        _add_into(total, usage)
    return total


def _add_into(total: JSON, usage: JSON) -> None:
    for key, value in usage.items():
        if isinstance(value, dict):
            _add_into(total.setdefault(key, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        else:
            total.setdefault(key, value)
