"""Chat prompts whose only control tokens are the chat template's own.

Tokenizing a rendered chat prompt with special-token parsing turns any `<|im_start|>` a user typed
into a real role marker, so one message could forge a system turn. Instead, before the template
runs, every control-token text inside the caller's strings is replaced by a private-use character
found nowhere else; the control tokens left in the rendered prompt are then exactly the template's
own. The prompt is split at those (as llama.cpp's own special-token partition does, honouring the
LSTRIP/RSTRIP token attributes), and the text between them, with the caller's markers restored, is
tokenized as literal text. What the model reads is what the ledger bills, and a prompt without
such markers tokenizes exactly as llama.cpp would tokenize it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar, cast

import llama_cpp
from llama_cpp import Llama

from entrepot.exceptions import InvalidRequestError

_SPECIAL = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
_C_SPACE = " \t\n\v\f\r"  # what C's isspace() strips next to an LSTRIP/RSTRIP token
# Stand-ins for a caller's marker text: Unicode's private-use areas, which no template emits.
_PRIVATE_USE = (range(0xE000, 0xF900), range(0xF0000, 0xFFFFE), range(0x100000, 0x10FFFE))
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Control:
    token: int
    lstrip: bool
    rstrip: bool


class ChatTokenizer:
    """Knows the vocabulary's control tokens; built once per loaded model."""

    def __init__(self, llm: Llama, template: str) -> None:
        vocab = llm._model.vocab
        controls: dict[str, _Control] = {}
        for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
            attr = llama_cpp.llama_vocab_get_attr(vocab, token)
            if attr & _SPECIAL:
                text = (llama_cpp.llama_vocab_get_text(vocab, token) or b"").decode(
                    "utf-8", "replace"
                )
                if text and text not in controls:
                    controls[text] = _Control(
                        token,
                        lstrip=bool(attr & llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP),
                        rstrip=bool(attr & llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP),
                    )
        self._llm = llm
        self._template = template
        self._controls = controls
        # Longest first, as llama.cpp tries them: `<|im_start|>` wins over a shorter prefix.
        longest_first = sorted(controls, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, longest_first))) if controls else None

    def shield(self, payload: _T) -> tuple[_T, dict[int, str]]:
        """`payload` (the template's input: messages, tools) with each control-token text in
        its strings, keys included, replaced by a stand-in character, and the table (for
        `str.translate`) that puts the text back. Nested values count: a template may render a
        tool's schema or a call's arguments."""
        pattern = self._pattern
        strings = list(_strings(payload))
        if pattern is None or not any(pattern.search(s) for s in strings):
            return payload, {}
        taken = set(self._template).union(*strings)
        free = (chr(c) for area in _PRIVATE_USE for c in area if chr(c) not in taken)
        stand_in: dict[str, str] = {}

        def replace(match: re.Match[str]) -> str:
            if match.group() not in stand_in:
                char = next(free, None)
                if char is None:
                    raise InvalidRequestError(
                        "messages use every private-use character; they cannot be formatted",
                        param="messages",
                    )
                stand_in[match.group()] = char
            return stand_in[match.group()]

        shielded = _map_strings(payload, lambda s: pattern.sub(replace, s))
        return shielded, {ord(char): text for text, char in stand_in.items()}

    def tokenize(self, prompt: str, restore: dict[int, str]) -> list[int]:
        """Control tokens where the rendered prompt has their text; literal tokens elsewhere."""
        tokens: list[int] = []
        for raw, control in self._partition(prompt):
            if raw:
                literal = raw.translate(restore).encode("utf-8")
                tokens += self._llm.tokenize(literal, add_bos=False, special=False)
            if control is not None:
                tokens.append(control.token)
        return tokens

    def _partition(self, prompt: str) -> Iterator[tuple[str, _Control | None]]:
        """(text before, control token) pairs; the last pair carries the tail and no token."""
        start, strip_next = 0, False
        if self._pattern is not None:
            for match in self._pattern.finditer(prompt):
                control = self._controls[match.group()]
                raw = prompt[start : match.start()]
                raw = raw.lstrip(_C_SPACE) if strip_next else raw
                yield (raw.rstrip(_C_SPACE) if control.lstrip else raw), control
                start, strip_next = match.end(), control.rstrip
        tail = prompt[start:]
        yield (tail.lstrip(_C_SPACE) if strip_next else tail), None


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _map_strings(value: _T, change: Callable[[str], str]) -> _T:
    """`value` with `change` applied to every string in it, dictionary keys included."""
    if isinstance(value, str):
        return cast(_T, change(value))
    if isinstance(value, dict):
        items = value.items()
        return cast(_T, {_map_strings(k, change): _map_strings(v, change) for k, v in items})
    if isinstance(value, list | tuple):
        return cast(_T, type(value)(_map_strings(item, change) for item in value))
    return value
