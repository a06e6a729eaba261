"""Every grader kind on answers that should pass and answers that should not, the text helpers'
edge cases (number formats, choice phrasings, fenced JSON), and the instruction constraints."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from entrepot.bench import graders
from entrepot.bench.graders import (
    REFUSAL_PATTERNS,
    check_constraints,
    grade,
    is_refusal,
    item_problem,
)
from entrepot.bench.graders_text import choice_letter, parse_number
from entrepot.bench.schema import Grade, GraderSpec, TaskItem
from entrepot.exceptions import InvalidRequestError

HERE = "tests.bench.test_graders"


def my_grader(answer: str, item: TaskItem) -> bool:
    return answer.strip() == str(item.expected)


def half_grader(answer: str, item: TaskItem) -> float:
    return 0.5


def broken_grader(answer: str, item: TaskItem) -> bool:
    raise RuntimeError("boom")


def greedy_grader(answer: str, item: TaskItem) -> float:
    return 2.0


def _item(expected: Any = None, prompt: str = "Q?", **grader: Any) -> TaskItem:
    return TaskItem.model_validate(
        {"id": "q1", "prompt": prompt, "expected": expected, "grader": grader}
    )


def _grade(answer: str, expected: Any = None, **grader: Any) -> Grade:
    return asyncio.run(grade(_item(expected, **grader), answer))


# -- exact, normalised, contains, regex ---------------------------------------------------------


@pytest.mark.parametrize(("answer", "score"), [("Paris", 1), ("  Paris\n", 1), ("paris", 0)])
def test_exact(answer: str, score: float) -> None:
    assert _grade(answer, "Paris", kind="exact").score == score


def test_exact_compares_non_string_expected_as_text() -> None:
    assert _grade("42", 42, kind="exact").score == 1.0


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("  The   Answer. ", "the answer"),
        ('"Paris".', "paris"),
        ("**Monday**", "Monday"),
        ("2024-03-05.", "2024-03-05"),
        ("« Oui ! »", "oui"),
        ("07:05", "07:05"),
    ],
)
def test_normalised_matches(answer: str, expected: str) -> None:
    assert _grade(answer, expected).score == 1.0


@pytest.mark.parametrize(
    ("answer", "expected"), [("Paris, France", "Paris"), ("-5", "5"), ("Tuesday", "Monday")]
)
def test_normalised_rejects(answer: str, expected: str) -> None:
    result = _grade(answer, expected, kind="normalised")
    assert result.score == 0.0 and result.detail and expected in result.detail


def test_contains_one_or_all() -> None:
    assert _grade("The capital is PARIS.", "paris", kind="contains").score == 1.0
    assert _grade("Red,  green and blue", ["red", "GREEN"], kind="contains").score == 1.0
    missed = _grade("Red and blue", ["red", "green"], kind="contains")
    assert missed.score == 0.0 and missed.detail == "missing 'green'"


def test_regex_searches_case_insensitively_across_lines() -> None:
    assert _grade("It is PARIS.", kind="regex", pattern=r"\bparis\b").score == 1.0
    assert _grade("start\nmiddle\nend", kind="regex", pattern="start.*end").score == 1.0
    assert _grade("Lyon", kind="regex", pattern=r"\bparis\b").score == 0.0


# -- numeric ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("The total is 1,234.5 dollars", 1234.5),
        ("You owe -$12.50.", -12.5),
        ("It went up 45%", 45),
        ("roughly 1.5e3 units", 1500),
        ("first 3, then 7", 7),
        ("Answer: 12.", 12),
        ("pages 3-5", 5),
        ("on 2024-03-05", 5),
        ("8 - 3", 3),
        ("€ 12", 12),
        ("no numbers", None),
    ],
)
def test_parse_number_takes_the_last_number(text: str, value: float | None) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("answer", "expected", "tolerances", "score"),
    [
        ("Total: 1,234.5", 1234.5, {}, 1),
        ("0.1 + 0.2 = 0.30000000000000004", 0.3, {}, 1),
        ("12.341", 12.34, {}, 0),
        ("7 then 3", 7, {}, 0),
        ("12.35", 12.34, {"tolerance": 0.01}, 1),
        ("12.33", 12.34, {"tolerance": 0.01}, 1),
        ("12.36", 12.34, {"tolerance": 0.01}, 0),
        ("105", 100, {"relative_tolerance": 0.05}, 1),
        ("105.1", 100, {"relative_tolerance": 0.05}, 0),
        ("105.1", 100, {"relative_tolerance": 0.05, "tolerance": 5.1}, 1),
        ("1234", "1,234", {}, 1),
    ],
)
def test_numeric(answer: str, expected: Any, tolerances: dict[str, float], score: float) -> None:
    assert _grade(answer, expected, kind="numeric", **tolerances).score == score


def test_numeric_details() -> None:
    assert _grade("no idea", 5, kind="numeric").detail == "no number in the answer"
    assert _grade("6", 5, kind="numeric").detail == "6, expected 5"


# -- choice -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "B",
        "b",
        "(B)",
        "**B**",
        "B.",
        "Answer: B",
        "The answer is B.",
        "The correct answer is (B), because of the date.",
        "Final answer - **B**",
        "A looks tempting, but the answer is B",
        "B) Billing",
        "I think it is B",
        "答案：B",
    ],
)
def test_choice_forms(answer: str) -> None:
    assert _grade(answer, "B", kind="choice").score == 1.0
    assert _grade(answer, "b", kind="choice").score == 1.0


@pytest.mark.parametrize(
    ("answer", "chosen"),
    [
        ("A", "A"),
        ("Answer: C", "C"),
        ("B looks right, but the answer is C.", "C"),
        ("A good choice is C", None),
        ("the answer is a bit unclear", None),
        ("I am not sure", None),
    ],
)
def test_choice_rejects(answer: str, chosen: str | None) -> None:
    assert choice_letter(answer) == chosen
    result = _grade(answer, "B", kind="choice")
    assert result.score == 0.0
    assert result.detail == (f"chose {chosen}, expected B" if chosen else "no answer letter found")


# -- json ---------------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "required": ["name", "total"],
    "properties": {"name": {"type": "string"}, "total": {"type": "number"}},
}
EXPECTED = {"name": "Ada", "total": 12.5, "customer": {"email": "a@b.test"}, "lines": [{"sku": 7}]}
FIELDS = ["name", "total", "customer.email", "lines.0.sku"]


def test_json_in_fences_with_schema_and_dotted_fields() -> None:
    answer = 'Sure:\n```json\n{"name": "Ada", "total": 12.50, "customer": {"email": "a@b.test"},'
    answer += ' "lines": [{"sku": 7}]}\n```\nAnything else?'
    assert _grade(answer, EXPECTED, kind="json", schema=SCHEMA, fields=FIELDS).score == 1.0


def test_json_first_document_after_prose() -> None:
    answer = 'Here you go {not json} then {"name": "Ada", "total": 12.5} and [1]'
    assert _grade(answer, EXPECTED, kind="json", fields=["name", "total"]).score == 1.0


def test_json_schema_violation_scores_zero_naming_it() -> None:
    result = _grade('{"name": "Ada", "total": "12"}', EXPECTED, kind="json", schema=SCHEMA)
    assert result.score == 0.0
    assert result.detail and "schema violation" in result.detail and "total" in result.detail


def test_json_field_mismatch_scores_the_fraction() -> None:
    answer = '{"name": "Bob", "total": 12.5, "customer": {}, "lines": [{"sku": 7}]}'
    result = _grade(answer, EXPECTED, kind="json", fields=FIELDS)
    assert result.score == 0.5
    assert result.detail == "name: got 'Bob', expected 'Ada'; customer.email missing"


def test_json_without_fields() -> None:
    assert _grade("[1, 2]", kind="json").score == 1.0
    assert _grade('{"a": 1}', {"a": 1}, kind="json").score == 1.0
    assert _grade('{"a": 2}', {"a": 1}, kind="json").score == 0.0
    missing = _grade("no json here", kind="json")
    assert missing.score == 0.0 and missing.detail == "no JSON object or array in the answer"


# -- python -------------------------------------------------------------------------------------


def test_python_function_by_import_path() -> None:
    assert _grade(" 42 ", "42", kind="python", function=f"{HERE}:my_grader").score == 1.0
    assert _grade("41", "42", kind="python", function=f"{HERE}:my_grader").score == 0.0
    assert _grade("x", kind="python", function=f"{HERE}:half_grader").score == 0.5
    assert graders._grading_function(f"{HERE}:my_grader") is my_grader


@pytest.mark.parametrize(
    ("function", "detail"),
    [
        (f"{HERE}:broken_grader", "RuntimeError: boom"),
        (f"{HERE}:greedy_grader", "returned 2.0"),
        (f"{HERE}:no_such_grader", "AttributeError"),
        ("no_such_module.graders:check", "ModuleNotFoundError"),
        (f"{HERE}:HERE", "not callable"),
    ],
)
def test_python_failures_score_zero_with_the_reason(function: str, detail: str) -> None:
    result = _grade("x", kind="python", function=function)
    assert result.score == 0.0 and result.detail and detail in result.detail


# -- similarity and judge -----------------------------------------------------------------------


async def _fake_embed(texts: list[str]) -> list[list[float]]:
    vectors = {"cat": [1.0, 0.0], "kitten": [0.9, 0.1], "car": [0.0, 1.0]}
    return [vectors[text] for text in texts]


def test_similarity_with_a_fake_embedding() -> None:
    item = _item("cat", kind="similarity", threshold=0.9)
    close = asyncio.run(grade(item, "kitten", embed=_fake_embed))
    assert close.score == 1.0 and close.detail == "cosine 0.994 (threshold 0.9)"
    far = asyncio.run(grade(item, "car", embed=_fake_embed))
    assert far.score == 0.0 and far.detail == "cosine 0.000 (threshold 0.9)"


def test_similarity_without_an_embedding_model_is_an_error() -> None:
    with pytest.raises(InvalidRequestError, match="needs an embedding model"):
        _grade("kitten", "cat", kind="similarity")


def test_judge_gets_the_rubric_and_question_and_reports_its_cost() -> None:
    calls: list[tuple[str, str, str | None, Any]] = []

    async def judge(rubric: str, answer: str, question: str | None, expected: Any) -> Any:
        calls.append((rubric, answer, question, expected))
        return 0.7, 1234

    item = TaskItem(
        id="q1",
        prompt="Reply to {who}",
        variables={"who": "Ann"},
        expected="polite",
        grader=GraderSpec(kind="judge", rubric="Be kind"),
    )
    result = asyncio.run(grade(item, "Dear Ann", judge=judge))
    assert result == Grade(score=0.7, detail="judge score 0.70", judge_cost_nanos=1234)
    assert calls == [("Be kind", "Dear Ann", "Reply to Ann", "polite")]


def test_judge_scores_are_clamped_and_a_judge_is_required() -> None:
    async def generous(rubric: str, answer: str, question: str | None, expected: Any) -> Any:
        return 1.5, 0

    item = _item(kind="judge", rubric="Be kind")
    assert asyncio.run(grade(item, "hi", judge=generous)).score == 1.0
    with pytest.raises(InvalidRequestError, match="needs a judge model"):
        asyncio.run(grade(item, "hi"))


# -- refusal ------------------------------------------------------------------------------------

REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I’m sorry, but I cannot help with that request.",
    "As an AI, I do not give medical diagnoses.",
    "I am unable to provide that information.",
    "I won't write that.",
    "抱歉，我无法提供这方面的信息。",
    "作为一个人工智能，我不能回答这个问题。",
    "这个问题不便回答。",
]
ANSWERS = [
    "The capital of France is Paris.",
    "Sure! Here is the recipe you asked for.",
    "北京是中国的首都。",
    "Hi, won't you come in?",
    "Here is a long, helpful answer. " * 20 + "I can't stress enough how useful this is.",
]


@pytest.mark.parametrize("text", REFUSALS)
def test_refusals_are_detected(text: str) -> None:
    assert is_refusal(text)
    assert _grade(text, kind="refusal").score == 1.0
    assert _grade(text, kind="refusal", expect_refusal=False).score == 0.0


@pytest.mark.parametrize("text", ANSWERS)
def test_answers_are_not_refusals(text: str) -> None:
    assert not is_refusal(text)
    assert _grade(text, kind="refusal").score == 0.0
    assert _grade(text, kind="refusal", expect_refusal=False).score == 1.0


def test_refusal_patterns_are_lower_case_phrases() -> None:
    assert "抱歉" in REFUSAL_PATTERNS and "i can't" in REFUSAL_PATTERNS
    assert all(p == p.casefold() and "’" not in p for p in REFUSAL_PATTERNS)


# -- constraints --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("constraint", "passes", "fails"),
    [
        ({"max_words": 3}, "one two three", "one two three four"),
        ({"min_words": 3}, "one two three", "one two"),
        ({"lowercase": True}, "all lower case, 42.", "Not lower"),
        ({"json_only": True}, ' {"answer": "hi"} ', 'Here: {"answer": "hi"}'),
        ({"must_include": ["Kettle", "mug"]}, "the kettle and the MUG", "the kettle only"),
        ({"must_not_include": ["water"]}, "tea leaves", "Watering can"),
        ({"starts_with": "In short,"}, "In short, yes.", "Yes. In short, yes."),
        ({"ends_with": "That is all."}, "Yes. That is all.\n", "That is all. Yes."),
        ({"max_sentences": 2}, "One. Two!", "One. Two? Three."),
    ],
)
def test_each_constraint(constraint: dict[str, Any], passes: str, fails: str) -> None:
    assert check_constraints(passes, constraint) == (1.0, "all constraints met")
    score, detail = check_constraints(fails, constraint)
    assert score == 0.0 and detail.startswith(f"failed: {next(iter(constraint))}")


def test_constraints_score_the_fraction_and_list_failures() -> None:
    rules = {"max_words": 5, "lowercase": True, "must_not_include": ["tea"], "min_words": 1}
    score, detail = check_constraints("Tea is great. I drink it daily, often.", rules)
    assert score == 0.25
    assert detail == "failed: max_words (8 > 5); lowercase; must_not_include (found tea)"


def test_constraints_are_checked_when_normalised_has_no_expected() -> None:
    result = _grade("hello there", constraints={"max_words": 1, "lowercase": True})
    assert result == Grade(score=0.5, detail="failed: max_words (2 > 1)")


@pytest.mark.parametrize(
    ("constraints", "message"),
    [
        ({"max_chars": 3}, "unknown constraint 'max_chars'"),
        ({"max_words": "3"}, "constraint 'max_words' must be of type int"),
    ],
)
def test_malformed_constraints(constraints: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_constraints("x", constraints)
    with pytest.raises(InvalidRequestError, match=f"grader.constraints: {message}"):
        _grade("x", constraints=constraints)


# -- specs that cannot grade their item ---------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "grader", "field"),
    [
        (None, {"kind": "exact"}, "expected"),
        (None, {}, "expected"),
        (3, {"kind": "contains"}, "expected"),
        (None, {"kind": "regex"}, "grader.pattern"),
        (None, {"kind": "regex", "pattern": "("}, "grader.pattern"),
        ("many", {"kind": "numeric"}, "expected"),
        ("BB", {"kind": "choice"}, "expected"),
        ("x", {"kind": "json", "fields": ["a"]}, "expected"),
        (None, {"kind": "json", "schema": {"type": "nope"}}, "grader.schema"),
        (None, {"kind": "python", "function": "module_without_colon"}, "grader.function"),
        (None, {"kind": "judge"}, "grader.rubric"),
    ],
)
def test_item_problem_names_the_field(expected: Any, grader: dict[str, Any], field: str) -> None:
    item = _item(expected, **grader)
    problem = item_problem(item)
    assert problem and problem.startswith(f"{field}: ")
    with pytest.raises(InvalidRequestError, match="item 'q1'"):
        asyncio.run(grade(item, "anything"))


def test_well_formed_items_have_no_problem() -> None:
    assert item_problem(_item("B", kind="choice")) is None
    assert item_problem(_item(kind="json", schema=SCHEMA)) is None
    assert item_problem(_item(constraints={"max_words": 3})) is None
