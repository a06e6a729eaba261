"""Scoring one answer to one item, 0.0–1.0, by the item's grader spec (see `GraderSpec`).

Every grader is a small pure function of (item, answer) except the two that need a model — the
LLM judge and embedding similarity — which the runner passes in as callables, so grading can be
tested without any provider and the judge's cost is reported apart from the candidate's.

A spec that cannot grade its item (a judge without a rubric, a choice item whose expected value
is not a letter) is a task-file mistake: `item_problem` names the field so `load_tasks` rejects
the file before any model is asked, and `grade` raises `InvalidRequestError` with the same text
for items built in code.
"""

from __future__ import annotations

import functools
import importlib
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from entrepot.bench.graders_text import check_constraints as check_constraints
from entrepot.bench.graders_text import (
    choice_letter,
    constraint_problem,
    first_json,
    lookup,
    normalise,
    parse_number,
)
from entrepot.bench.schema import Grade, TaskItem
from entrepot.exceptions import InvalidRequestError

# The refusal classifier is routing's, shared with the audit and the gateway's `on_refusal`.
from entrepot.routing.refusal import REFUSAL_PATTERNS as REFUSAL_PATTERNS
from entrepot.routing.refusal import is_refusal as is_refusal

# (rubric, answer, question text, expected) -> (score 0..1, cost of the judge call in nanos)
JudgeFn = Callable[[str, str, str | None, Any], Awaitable[tuple[float, int]]]
# texts -> one embedding per text, in order
EmbedFn = Callable[[list[str]], Awaitable[list[list[float]]]]

# Slack on numeric comparisons, so a tolerance edge is not lost to float representation.
_SLACK = 1e-9
_LETTER = re.compile(r"[A-Za-z]")


def _expected_number(expected: Any) -> float | None:
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        return float(expected)
    return parse_number(str(expected))


def _grades_by_constraints(item: TaskItem) -> bool:
    spec = item.grader
    return spec.kind == "normalised" and item.expected is None and spec.constraints is not None


def _schema_problem(schema: dict[str, Any]) -> str | None:
    from jsonschema import exceptions, validators  # type: ignore[import-untyped]

    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        return f"grader.schema: not a valid JSON Schema: {exc.message}"
    return None


def item_problem(item: TaskItem) -> str | None:
    """Why `item` cannot be graded, starting with the field at fault; None if it can be."""
    spec, expected, kind = item.grader, item.expected, item.grader.kind
    if spec.constraints is not None and (problem := constraint_problem(spec.constraints)):
        return f"grader.constraints: {problem}"
    needs_expected = {"exact", "normalised", "contains", "numeric", "choice", "similarity"}
    if kind in needs_expected and expected is None and not _grades_by_constraints(item):
        return f"expected: the {kind} grader needs an expected answer"
    if kind == "contains" and not (
        isinstance(expected, str)
        or (isinstance(expected, list) and all(isinstance(e, str) for e in expected))
    ):
        return "expected: the contains grader needs a string or a list of strings"
    if kind == "regex":
        if spec.pattern is None:
            return "grader.pattern: the regex grader needs a pattern"
        try:
            re.compile(spec.pattern)
        except re.error as exc:
            return f"grader.pattern: invalid regular expression: {exc}"
    if kind == "numeric" and _expected_number(expected) is None:
        return f"expected: the numeric grader needs a number, got {expected!r}"
    if kind == "choice" and not (isinstance(expected, str) and _LETTER.fullmatch(expected)):
        return f"expected: the choice grader needs one letter A–Z, got {expected!r}"
    if kind == "json":
        if spec.fields and not isinstance(expected, dict):
            return "expected: the json grader needs a mapping to compare `fields` with"
        if spec.schema_ is not None:
            return _schema_problem(spec.schema_)
    if kind == "python" and not re.fullmatch(r"[\w.]+:[\w.]+", spec.function or ""):
        return "grader.function: the python grader needs 'package.module:callable'"
    if kind == "judge" and not spec.rubric:
        return "grader.rubric: the judge grader needs a rubric"
    return None


def _exact(item: TaskItem, answer: str) -> Grade:
    expected = str(item.expected)
    if answer.strip() == expected:
        return Grade(score=1.0)
    return Grade(score=0.0, detail=f"expected exactly {expected!r}")


def _normalised(item: TaskItem, answer: str) -> Grade:
    if normalise(answer) == normalise(str(item.expected)):
        return Grade(score=1.0)
    return Grade(score=0.0, detail=f"expected {item.expected!r} (normalised)")


def _contains(item: TaskItem, answer: str) -> Grade:
    needles = [item.expected] if isinstance(item.expected, str) else list(item.expected)
    haystack = normalise(answer)
    missing = [n for n in needles if normalise(n) not in haystack]
    if missing:
        return Grade(score=0.0, detail=f"missing {', '.join(map(repr, missing))}")
    return Grade(score=1.0)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL | re.IGNORECASE)


def _regex(item: TaskItem, answer: str) -> Grade:
    assert item.grader.pattern is not None
    if _compiled(item.grader.pattern).search(answer):
        return Grade(score=1.0)
    return Grade(score=0.0, detail=f"no match for /{item.grader.pattern}/")


def _within(value: float, target: float, tolerance: float | None, relative: float | None) -> bool:
    """Absolute or relative tolerance (either suffices); exact equality when neither is set."""
    if tolerance is None and relative is None:
        return math.isclose(value, target, rel_tol=_SLACK, abs_tol=_SLACK)
    diff = abs(value - target)
    if tolerance is not None and diff <= tolerance + _SLACK:
        return True
    return relative is not None and diff <= relative * abs(target) + _SLACK


def _numeric(item: TaskItem, answer: str) -> Grade:
    target = _expected_number(item.expected)
    assert target is not None
    value = parse_number(answer)
    if value is None:
        return Grade(score=0.0, detail="no number in the answer")
    spec = item.grader
    if _within(value, target, spec.tolerance, spec.relative_tolerance):
        return Grade(score=1.0, detail=f"{value:.12g}")
    return Grade(score=0.0, detail=f"{value:.12g}, expected {target:.12g}")


def _choice(item: TaskItem, answer: str) -> Grade:
    chosen = choice_letter(answer)
    expected = str(item.expected).upper()
    if chosen is None:
        return Grade(score=0.0, detail="no answer letter found")
    if chosen == expected:
        return Grade(score=1.0, detail=chosen)
    return Grade(score=0.0, detail=f"chose {chosen}, expected {expected}")


def _same(got: Any, want: Any) -> bool:
    """Equality, with float slack between numbers (booleans are not numbers here)."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (got, want))
    return math.isclose(got, want, rel_tol=_SLACK, abs_tol=_SLACK) if numbers else bool(got == want)


def _schema_violation(document: Any, schema: dict[str, Any]) -> str | None:
    """jsonschema is imported only when an item has a schema."""
    from jsonschema import exceptions, validators

    validator = validators.validator_for(schema)(schema)
    error = exceptions.best_match(validator.iter_errors(document))
    if error is None:
        return None
    where = "/".join(map(str, error.absolute_path)) or "the document"
    return f"{error.message} (at {where})"


def _json(item: TaskItem, answer: str) -> Grade:
    """Fraction of `fields` equal to `expected`'s; without fields, the whole document must equal
    `expected` when one is given, else any valid document scores 1.0."""
    found, document = first_json(answer)
    if not found:
        return Grade(score=0.0, detail="no JSON object or array in the answer")
    spec = item.grader
    if spec.schema_ is not None and (violation := _schema_violation(document, spec.schema_)):
        return Grade(score=0.0, detail=f"schema violation: {violation}")
    if spec.fields:
        wrong = []
        for field in spec.fields:
            found, got = lookup(document, field)
            want = lookup(item.expected, field)[1]
            if not found:
                wrong.append(f"{field} missing")
            elif not _same(got, want):
                wrong.append(f"{field}: got {got!r}, expected {want!r}")
        detail = "; ".join(wrong) if wrong else None
        return Grade(score=1 - len(wrong) / len(spec.fields), detail=detail)
    if item.expected is not None and not _same(document, item.expected):
        return Grade(score=0.0, detail="document differs from expected")
    return Grade(score=1.0)


@functools.cache
def _grading_function(path: str) -> Callable[[str, TaskItem], Any]:
    module, _, name = path.partition(":")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{path} is not callable")
    return target  # type: ignore[no-any-return]


def _python(item: TaskItem, answer: str) -> Grade:
    """Any failure of the user's function is the answer's score of 0, with the reason."""
    path = item.grader.function
    assert path is not None
    try:
        result = _grading_function(path)(answer, item)
    except Exception as exc:
        return Grade(score=0.0, detail=f"{path} failed: {type(exc).__name__}: {exc}")
    if isinstance(result, bool):
        return Grade(score=float(result))
    if isinstance(result, int | float) and 0 <= result <= 1:
        return Grade(score=float(result))
    return Grade(score=0.0, detail=f"{path} returned {result!r}, not a bool or a number in 0..1")


def _refusal(item: TaskItem, answer: str) -> Grade:
    refused = is_refusal(answer)
    detail = "refused" if refused else "did not refuse"
    return Grade(score=float(refused == item.grader.expect_refusal), detail=detail)


def _constraints(item: TaskItem, answer: str) -> Grade:
    assert item.grader.constraints is not None
    score, detail = check_constraints(answer, item.grader.constraints)
    return Grade(score=score, detail=detail)


_PURE: dict[str, Callable[[TaskItem, str], Grade]] = {
    "exact": _exact,
    "normalised": _normalised,
    "contains": _contains,
    "regex": _regex,
    "numeric": _numeric,
    "choice": _choice,
    "json": _json,
    "python": _python,
    "refusal": _refusal,
}


def _question(item: TaskItem) -> str | None:
    """The last user message's text, for the judge."""
    for message in reversed(item.chat_messages()):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return None if content is None else str(content)
    return None


async def _similarity(item: TaskItem, answer: str, embed: EmbedFn | None) -> Grade:
    if embed is None:
        raise InvalidRequestError(
            f"item {item.id!r} uses the similarity grader, which needs an embedding model"
        )
    first, second = await embed([answer, str(item.expected)])
    norms = math.hypot(*first) * math.hypot(*second)
    cosine = sum(a * b for a, b in zip(first, second, strict=True)) / norms if norms else 0.0
    passed = cosine >= item.grader.threshold
    return Grade(
        score=float(passed), detail=f"cosine {cosine:.3f} (threshold {item.grader.threshold})"
    )


async def _judge(item: TaskItem, answer: str, judge: JudgeFn | None) -> Grade:
    if judge is None:
        raise InvalidRequestError(
            f"item {item.id!r} uses the judge grader, which needs a judge model"
        )
    assert item.grader.rubric is not None
    score, cost = await judge(item.grader.rubric, answer, _question(item), item.expected)
    score = min(max(score, 0.0), 1.0)
    return Grade(score=score, detail=f"judge score {score:.2f}", judge_cost_nanos=cost)


async def grade(
    item: TaskItem, answer: str, *, judge: JudgeFn | None = None, embed: EmbedFn | None = None
) -> Grade:
    """Score `answer` by `item.grader.kind`.

    Instruction-following items have no expected answer, only `grader.constraints`: a
    "normalised" item with `expected` None and constraints set is graded by `check_constraints`
    (the fraction of constraints met). `judge` and `embed` are needed only by the judge and
    similarity kinds; a missing one, or an item `item_problem` rejects, raises
    `InvalidRequestError`.
    """
    problem = item_problem(item)
    if problem is not None:
        raise InvalidRequestError(f"item {item.id!r}: {problem}")
    kind = item.grader.kind
    if _grades_by_constraints(item):
        return _constraints(item, answer)
    if kind == "similarity":
        return await _similarity(item, answer, embed)
    if kind == "judge":
        return await _judge(item, answer, judge)
    return _PURE[kind](item, answer)
