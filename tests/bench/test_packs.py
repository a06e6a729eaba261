"""The built-in task packs: sizes, ids, determinism, and ground truth recomputed here from each
item's own text (never from the generator's internals), so a generator bug cannot hide behind a
matching bug in the check."""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import json
import re
from typing import Any

import jsonschema
import pytest

from entrepot.bench.packs import PACKS, list_packs, load_pack
from entrepot.bench.schema import TaskItem
from entrepot.exceptions import ConfigError

NAMES = ["arithmetic", "dates", "extraction", "tickets", "instructions"]


def _text(item: TaskItem) -> str:
    return str(item.chat_messages()[-1]["content"])


def _search(pattern: str, text: str) -> re.Match[str]:
    found = re.search(pattern, text)
    assert found, (pattern, text)
    return found


def _by_subtype(name: str, seed: int = 0) -> dict[str, list[TaskItem]]:
    groups: dict[str, list[TaskItem]] = {}
    for item in load_pack(name, seed=seed):
        groups.setdefault(item.tags[1], []).append(item)
    return groups


# -- the registry ------------------------------------------------------------------------------


def test_registry_lists_the_five_packs_then_the_public_ones() -> None:
    assert [info.name for info in list_packs()] == [*NAMES, "gsm8k", "gpqa-diamond", "aime2025"]
    assert all(PACKS[name].items >= 100 for name in NAMES)
    assert all(info.task == info.name and info.description for info in PACKS.values())


def test_unknown_pack_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"arithmetic.*instructions"):
        load_pack("trivia")
    with pytest.raises(ConfigError):
        load_pack("dates", size=0)


@pytest.mark.parametrize("name", NAMES)
def test_pack_shape(name: str) -> None:
    items = load_pack(name)
    assert len(items) == PACKS[name].items >= 100
    assert [item.id for item in items] == [f"{name}-{n}" for n in range(len(items))]
    for item in items:
        assert TaskItem.model_validate(item.model_dump(by_alias=True)) == item
        assert item.task == name and item.tags[0] == name and len(item.tags) == 2
        assert _text(item).strip()
    json.dumps([item.model_dump(by_alias=True) for item in items])  # storable in a report


@pytest.mark.parametrize("name", NAMES)
def test_pack_is_deterministic_per_seed(name: str) -> None:
    assert load_pack(name, seed=7) == load_pack(name, seed=7)
    assert load_pack(name, seed=7) != load_pack(name, seed=8)
    assert load_pack(name, seed=7, size=10) == load_pack(name, seed=7)[:10]
    assert len(load_pack(name, size=250)) == 250


# -- arithmetic --------------------------------------------------------------------------------

KNOWN_FACTORS = {"metres": 1000, "centimetres": 100, "grams": 1000, "minutes": 60}
KNOWN_FACTORS |= {"millilitres": 1000, "inches": 12}
MONEY = r"\$(\d+\.\d\d)"


def _arithmetic(kind: str, question: str) -> float:
    """The answer, recomputed from the numbers in the question."""
    if kind == "shopping":
        return sum(int(q) * float(p) for q, p in re.findall(rf"(\d+) [a-z ]+ at {MONEY}", question))
    if kind == "conversion":
        pattern = r"(?:1 \w+ = ([\d.]+) \w+, )?[Hh]ow many (\w+) are there in ([\d.]+)"
        given, target, amount = _search(pattern, question).groups()
        return float(amount) * (float(given) if given else KNOWN_FACTORS[target])
    if kind == "percentage":
        match = _search(
            rf"costs {MONEY} (and is discounted by|before a sales tax of) (\d+)%", question
        )
        sign = -1 if "discounted" in match[2] else 1
        return float(match[1]) * (1 + sign * int(match[3]) / 100)
    if kind == "rate":
        rate, time = re.findall(r"\d+(?:\.\d+)?", question)
        return float(rate) * float(time)
    assert kind == "split"
    match = _search(
        rf"bill of {MONEY}(?: plus a (\d+)% tip)? is split evenly between (\d+)", question
    )
    return float(match[1]) * (1 + int(match[2] or 0) / 100) / int(match[3])


def test_arithmetic_answers_recomputed_from_the_question() -> None:
    for kind, items in _by_subtype("arithmetic", seed=11).items():
        for item in items:
            question = _text(item)
            assert '"Answer: <number>"' in question.splitlines()[-1]
            assert item.grader.kind == "numeric" and item.grader.tolerance == 0.01
            assert item.expected == pytest.approx(_arithmetic(kind, question), abs=0.0051), item.id
            assert round(item.expected, 2) == item.expected


# -- dates -------------------------------------------------------------------------------------

DATE = r"\d{4}-\d{2}-\d{2}|\d{1,2} [A-Z][a-z]+ \d{4}|[A-Z][a-z]+ \d{1,2}, \d{4}"


def _dates(text: str) -> list[dt.date]:
    found = []
    for written in re.findall(DATE, text):
        for layout in ("%Y-%m-%d", "%d %B %Y", "%B %d, %Y"):
            try:
                found.append(dt.datetime.strptime(written, layout).date())
                break
            except ValueError:
                continue
    return found


def test_dates_answers_recomputed_with_datetime() -> None:
    groups = _by_subtype("dates", seed=5)
    for item in groups["weekday"]:
        (day,) = _dates(_text(item))
        assert item.expected == calendar.day_name[day.weekday()]
    for item in groups["days_between"]:
        start, end = _dates(_text(item))
        assert item.expected == (end - start).days > 0
    for item in groups["days_after"]:
        (start,) = _dates(_text(item))
        days = int(_search(r"(\d+) days after", _text(item))[1])
        assert item.expected == (start + dt.timedelta(days=days)).strftime("%Y-%m-%d")
    crossed = 0
    for item in groups["clock"]:
        found = _search(r"at (\d\d):(\d\d) .* takes (\d+) hours (\d+) minutes", _text(item))
        hh, mm, hours, minutes = map(int, found.groups())
        total = hh * 60 + mm + hours * 60 + minutes
        crossed += total >= 24 * 60
        total %= 24 * 60
        assert item.expected == f"{total // 60:02d}:{total % 60:02d}"
    assert crossed > 0  # some journeys run past midnight
    for item in groups["earlier"]:
        first, second = _dates(_text(item))
        assert item.grader.kind == "choice" and item.expected == ("A" if first < second else "B")
    assert {item.expected for item in groups["earlier"]} == {"A", "B"}
    for item in groups["leap_year"]:
        year = int(_search(r"year (\d{4})", _text(item))[1])
        assert item.expected == ("yes" if calendar.isleap(year) else "no")
    assert {item.expected for item in groups["leap_year"]} == {"yes", "no"}


# -- extraction --------------------------------------------------------------------------------

AMOUNT = r"(?:[A-Z]{3} |[€£])(\d+\.\d\d)"
LINE_ITEMS = {
    "labelled": rf"^  (\d+) x .+ @ {AMOUNT}$",
    "table": rf"^\| [^|]+ \| (\d+) \| {AMOUNT} \|",
    "letter": rf"(\d+) x [^;]+? at {AMOUNT} each",
    "receipt": rf"^.+ (\d+) x {AMOUNT}$",
}
STATED_TOTAL = rf"(?:Amount due:|TOTAL:?|amount due is) {AMOUNT}"
SYMBOLS = {"€": "EUR", "£": "GBP"}


def test_extraction_totals_recomputed_from_the_line_items() -> None:
    for layout, items in _by_subtype("extraction", seed=3).items():
        for item in items:
            text, expected = _text(item), item.expected
            lines = re.findall(LINE_ITEMS[layout], text, flags=re.MULTILINE)
            assert 1 <= len(lines) <= 4, item.id
            total = sum(int(quantity) * float(price) for quantity, price in lines)
            (stated,) = re.findall(STATED_TOTAL, text)
            assert expected["total"] == pytest.approx(total, abs=1e-6) == float(stated)
            jsonschema.validate(expected, item.grader.schema_ or {})
            assert item.grader.fields and set(item.grader.fields) <= set(expected)
            for field in ("vendor", "invoice_number", "customer_email"):
                assert expected[field].lower() in text.lower()
            assert expected["currency"] in text or any(
                symbol in text and code == expected["currency"] for symbol, code in SYMBOLS.items()
            )
            day = dt.date.fromisoformat(expected["date"])
            short = f"{day.day} {calendar.month_abbr[day.month]} {day.year}"
            assert any(form in text for form in (day.isoformat(), f"{day:%Y.%m.%d}", short))


# -- tickets -----------------------------------------------------------------------------------

KEYWORDS = {
    "billing": ("charged", "invoice", "payment", "bill"),
    "technical": ("error", "crash", "bug", "freezes", "syncing", "won't load"),
    "account": ("password", "log in", "login", "username", "sign in"),
    "shipping": ("package", "parcel", "delivery", "tracking", "courier", "delivered"),
    "refund": ("refund", "money back", "reimburse"),
    "other": ("feedback", "job", "partnership", "opening hours", "suggestion"),
}


def test_ticket_text_names_its_category_and_no_other() -> None:
    for category, items in _by_subtype("tickets", seed=9).items():
        for item in items:
            prompt = _text(item)
            assert f"\n{item.expected}) {category}:" in prompt
            ticket = prompt.split('"""')[1].lower()
            assert any(word in ticket for word in KEYWORDS[category]), ticket
            for other, words in KEYWORDS.items():
                if other != category:
                    assert not [w for w in words if w in ticket], (category, ticket)
    assert {item.expected for item in load_pack("tickets", size=6)} == set("ABCDEF")


# -- instructions ------------------------------------------------------------------------------


def _compliant(rules: dict[str, Any]) -> str:
    """A hand-built answer meant to satisfy `rules`: opening, required words, filler, closing."""
    words = [*rules.get("starts_with", "").split(), *rules.get("must_include", [])]
    closing = rules.get("ends_with", "").split()
    words += ["okay"] * max(0, rules.get("min_words", 0) - len(words) - len(closing))
    text = " ".join(words + closing) if closing else " ".join(words) + "."
    return json.dumps({"answer": text}) if rules.get("json_only") else text


def _violations(answer: str, rules: dict[str, Any]) -> list[str]:
    words, lowered = answer.split(), answer.lower()
    sentences = [s for s in re.split(r"[.!?]+", answer) if s.strip()]
    checks = {
        "max_words": lambda v: len(words) <= v,
        "min_words": lambda v: len(words) >= v,
        "lowercase": lambda v: answer == lowered,
        "json_only": lambda v: isinstance(json.loads(answer), dict),
        "must_include": lambda v: all(w.lower() in lowered for w in v),
        "must_not_include": lambda v: not any(w.lower() in lowered for w in v),
        "starts_with": lambda v: answer.startswith(v),
        "ends_with": lambda v: answer.endswith(v),
        "max_sentences": lambda v: len(sentences) <= v,
    }
    return [kind for kind, value in rules.items() if not checks[kind](value)]


def test_every_instructions_item_is_satisfiable() -> None:
    kinds: set[str] = set()
    for seed in range(3):
        for item in load_pack("instructions", seed=seed):
            rules = item.grader.constraints
            assert item.grader.kind == "normalised" and item.expected is None and rules
            assert 1 <= len(rules) <= 3
            assert item.tags[1] == "+".join(sorted(rules))
            assert rules.get("min_words", 0) < rules.get("max_words", 10**6)
            assert _violations(_compliant(rules), rules) == [], (item.id, rules)
            assert "okay" not in " ".join(rules.get("must_not_include", []))
            kinds |= set(rules)
    assert len(kinds) == 9


def test_instructions_checker_rejects_a_careless_answer() -> None:
    rules = {"max_words": 5, "lowercase": True, "must_not_include": ["tea"], "max_sentences": 1}
    assert _violations("Tea is great. I drink it daily, often.", rules) == list(rules)


# -- gradable by the bench's graders -----------------------------------------------------------


def _correct(item: TaskItem) -> str:
    if item.task == "arithmetic":
        return f"Working it out step by step.\nAnswer: {item.expected}"
    if item.task == "extraction":
        return json.dumps(item.expected)
    if item.task == "instructions":
        assert item.grader.constraints
        return _compliant(item.grader.constraints)
    return str(item.expected)


@pytest.mark.parametrize("name", NAMES)
def test_correct_answers_score_full_marks(name: str) -> None:
    graders = pytest.importorskip("entrepot.bench.graders")
    for items in _by_subtype(name).values():
        for item in items[:5]:
            grade = asyncio.run(graders.grade(item, _correct(item)))
            assert grade.score == 1.0, (item.id, _correct(item), grade.detail)


def test_wrong_answers_lose_their_marks() -> None:
    graders = pytest.importorskip("entrepot.bench.graders")
    arithmetic, dates, extraction, tickets = (load_pack(n, size=6)[0] for n in NAMES[:4])
    wrong = {
        arithmetic.id: (arithmetic, f"Answer: {arithmetic.expected + 1}"),
        dates.id: (dates, "Blursday"),
        extraction.id: (extraction, json.dumps({**extraction.expected, "total": 0.5})),
        tickets.id: (tickets, "F"),
    }
    # JSON extraction scores the fraction of graded fields right: one wrong field of five.
    expected = {arithmetic.id: 0.0, dates.id: 0.0, extraction.id: 0.8, tickets.id: 0.0}
    for item, answer in wrong.values():
        score = asyncio.run(graders.grade(item, answer)).score
        assert score == pytest.approx(expected[item.id]), item.id
