"""Pulling the gradable part out of a model's free-text answer: a normalised string, the last
number, the chosen letter, the first JSON document, and instruction-following checks (whether it
is a refusal is `routing/refusal.py`'s, shared with the audit and the gateway).

Models wrap answers in prose, markdown and code fences however they were asked to reply, so a
grader that compared raw text would mostly measure formatting. These helpers are deliberately
forgiving about the wrapping and strict about the content, and they are pure so each rule can be
tested on its own.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Stripped from both ends by `normalise`: sentence punctuation, quotes, brackets and markdown
# emphasis — never signs, currency or `%`, which can be the content.
_SURROUNDING = " \t\r\n.,;:!?\"'`“”‘’«»()[]{}*_。，；：！？「」『』（）"
_SPACE = re.compile(r"\s+")

# The sign counts only when it does not follow a word (`3-5` is a range, `2024-03-05` a date);
# it must touch the number or its currency (`8 - 3` is a subtraction); thousands groups must be
# complete (`1,234`, not `12,3456`).
_NUMBER = re.compile(
    r"(?<!\w)(?P<sign>[-+−])?(?:[$€£¥]\s?)?"
    r"(?P<body>\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<exp>[eE][-+]?\d+)?"
)

# "Answer: B", "The answer is (B).", "Final answer - **B**", "答案：B"; the letter must be a
# capital so "the answer is a bit unclear" does not read as A.
_ANSWER_LETTER = re.compile(
    r"(?:(?i:\banswer)|答案)(?:\s+(?i:is))?\s*(?:是|[:：-])?\s*[*(\[\"'“]*\s*([A-Z])(?![A-Za-z])"
)
_WHOLE_LETTER = re.compile(r"^[\W_]*([A-Za-z])[\W_]*$")
_LEADING_LETTER = re.compile(r"^[*(\[\s]*([A-Z])[).:\]*]")
_LONE_CAPITAL = re.compile(r"(?<![\w'’])([A-Z])(?![\w'’])")

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_SENTENCE_END = re.compile(r"[.!?。！？]+")


def normalise(text: str) -> str:
    """Case-folded, whitespace collapsed, surrounding punctuation, quotes and emphasis removed."""
    return _SPACE.sub(" ", text.casefold()).strip(_SURROUNDING)


def parse_number(text: str) -> float | None:
    """The last number in `text` (`1,234.5`, `-3`, `$12`, `45%`, `1.5e3`), or None."""
    found = list(_NUMBER.finditer(text))
    if not found:
        return None
    last = found[-1]
    value = float(last["body"].replace(",", "") + (last["exp"] or ""))
    return -value if last["sign"] in ("-", "−") else value


def choice_letter(text: str) -> str | None:
    """The letter an answer chose: from an explicit "answer" phrase (the last one) if any, else
    a lone letter — the whole answer, a leading `B)`, or the only stand-alone capital."""
    explicit = _ANSWER_LETTER.findall(text)
    if explicit:
        return str(explicit[-1])
    for pattern in (_WHOLE_LETTER, _LEADING_LETTER):
        found = pattern.match(text.strip())
        if found:
            return found[1].upper()
    # "I" here is the pronoun ("I think it is C"); an answer of I is caught by the rules above.
    capitals = set(_LONE_CAPITAL.findall(text)) - {"I"}
    return capitals.pop() if len(capitals) == 1 else None


def first_json(text: str) -> tuple[bool, Any]:
    """(found, value) for the first JSON object or array in `text`, inside a code fence if any."""
    fenced = _FENCE.search(text)
    body = fenced[1] if fenced else text
    decoder = json.JSONDecoder()
    for start, char in enumerate(body):
        if char in "{[":
            try:
                return True, decoder.raw_decode(body, start)[0]
            except json.JSONDecodeError:
                continue
    return False, None


def lookup(document: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at a dotted path; integer segments index lists (`items.0.sku`)."""
    value = document
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return False, None
    return True, value


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _constraint_failure(answer: str, kind: str, value: Any) -> str | None:
    """Why `answer` breaks one constraint, or None when it satisfies it."""
    words = len(answer.split())
    lowered = answer.casefold()
    if kind == "max_words":
        return f"max_words ({words} > {value})" if words > value else None
    if kind == "min_words":
        return f"min_words ({words} < {value})" if words < value else None
    if kind == "lowercase":
        return "lowercase" if value and any(c.isupper() for c in answer) else None
    if kind == "json_only":
        return "json_only" if value and not _is_json(answer) else None
    if kind == "must_include":
        missing = [w for w in value if str(w).casefold() not in lowered]
        return f"must_include (missing {', '.join(missing)})" if missing else None
    if kind == "must_not_include":
        present = [w for w in value if str(w).casefold() in lowered]
        return f"must_not_include (found {', '.join(present)})" if present else None
    if kind == "starts_with":
        return None if answer.strip().startswith(value) else f"starts_with ({value!r})"
    if kind == "ends_with":
        return None if answer.strip().endswith(value) else f"ends_with ({value!r})"
    sentences = sum(1 for s in _SENTENCE_END.split(answer) if s.strip())
    return f"max_sentences ({sentences} > {value})" if sentences > value else None


# Each constraint's value type; `bool` is accepted where `int` is, as Python does.
CONSTRAINTS: dict[str, type] = {
    "max_words": int,
    "min_words": int,
    "lowercase": bool,
    "json_only": bool,
    "must_include": list,
    "must_not_include": list,
    "starts_with": str,
    "ends_with": str,
    "max_sentences": int,
}


def constraint_problem(constraints: dict[str, Any]) -> str | None:
    """What is wrong with a constraints mapping (an unknown name, a value of the wrong type)."""
    for kind, value in constraints.items():
        expected = CONSTRAINTS.get(kind)
        if expected is None:
            return f"unknown constraint {kind!r}; known: {', '.join(CONSTRAINTS)}"
        if not isinstance(value, expected):
            return f"constraint {kind!r} must be of type {expected.__name__}, got {value!r}"
    return None


def check_constraints(answer: str, constraints: dict[str, Any]) -> tuple[float, str]:
    """(fraction of constraints satisfied, a detail naming the failed ones).

    Words are whitespace-separated tokens, sentences are runs ended by `.`, `!` or `?`, and
    keywords match case-insensitively anywhere (so `must_not_include: [water]` also rejects
    "watering"). A malformed mapping (see `constraint_problem`) raises `ValueError`.
    """
    problem = constraint_problem(constraints)
    if problem is not None:
        raise ValueError(problem)
    if not constraints:
        return 1.0, "no constraints"
    failed = [
        reason
        for kind, value in constraints.items()
        if (reason := _constraint_failure(answer, kind, value)) is not None
    ]
    score = 1 - len(failed) / len(constraints)
    return score, ("failed: " + "; ".join(failed)) if failed else "all constraints met"
