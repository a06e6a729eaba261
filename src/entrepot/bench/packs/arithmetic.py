"""The `arithmetic` pack: everyday word problems with one numeric answer.

Money is computed with `Decimal` in cents so the ground truth never carries float error; answers
are integers or have two decimals, and the grader accepts anything within 0.01 so a model that
rounds the last cent the other way is not penalised.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal

from entrepot.bench.schema import GraderSpec, TaskItem

DESCRIPTION = "Word problems: shopping totals, unit conversions, discounts and tax, rates, bills"

NAMES = ("Maya", "Tom", "Priya", "Lucas", "Amara", "Jonas", "Sofia", "Kenji", "Ines", "Omar")
GOODS = (
    ("notebooks", 150, 600),
    ("pens", 40, 250),
    ("apples", 30, 120),
    ("coffee bags", 450, 1400),
    ("light bulbs", 120, 700),
    ("towels", 600, 2500),
    ("batteries", 80, 400),
    ("plant pots", 250, 1800),
)
# (from, to, factor, whether the factor is a well-known exact one or must be stated)
CONVERSIONS = (
    ("kilometres", "metres", Decimal(1000), True),
    ("metres", "centimetres", Decimal(100), True),
    ("kilograms", "grams", Decimal(1000), True),
    ("hours", "minutes", Decimal(60), True),
    ("litres", "millilitres", Decimal(1000), True),
    ("feet", "inches", Decimal(12), True),
    ("miles", "kilometres", Decimal("1.609"), False),
    ("pounds", "kilograms", Decimal("0.4536"), False),
    ("gallons", "litres", Decimal("3.785"), False),
)
RATES = (
    ("A printer prints {rate} pages per minute", "pages does it print in {time} minutes"),
    ("A car travels at {rate} km/h", "kilometres does it cover in {time} hours"),
    ("A tap fills {rate} litres per minute", "litres does it deliver in {time} minutes"),
    ("A baker makes {rate} rolls per hour", "rolls are made in {time} hours"),
)
SUFFIX = (
    "\n\nYou may show your working. End with a final line of the form "
    '"Answer: <number>" (digits only: no units, currency symbols or thousands separators).'
)
CENT = Decimal("0.01")

Problem = tuple[str, Decimal]


def _money(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


def _shopping(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    parts, total = [], 0
    for goods, low, high in rng.sample(GOODS, rng.randint(2, 3)):
        quantity, cents = rng.randint(2, 9), rng.randrange(low, high, 5)
        parts.append(f"{quantity} {goods} at ${_money(cents)} each")
        total += quantity * cents
    listed = ", ".join(parts[:-1]) + f" and {parts[-1]}"
    question = f"{name} buys {listed}. How much does {name} spend in total, in dollars?"
    return question, Decimal(total) / 100


def _conversion(rng: random.Random) -> Problem:
    source, target, factor, known = rng.choice(CONVERSIONS)
    amount = Decimal(rng.randint(2, 95)) / rng.choice((1, 1, 2, 4))
    given = "" if known else f"Using 1 {source[:-1]} = {factor} {target}, "
    question = f"{given}how many {target} are there in {amount.normalize():f} {source}?"
    suffix = "" if known else " Round to 2 decimal places."
    return question[0].upper() + question[1:] + suffix, amount * factor


def _percentage(rng: random.Random) -> Problem:
    item = rng.choice(("jacket", "bicycle", "lamp", "sofa", "printer", "kettle", "backpack"))
    price = Decimal(rng.randrange(2000, 60000, 50)) / 100
    if rng.random() < 0.5:
        percent = rng.choice((5, 10, 15, 20, 25, 30, 35, 40, 50))
        question = (
            f"A {item} costs ${price:.2f} and is discounted by {percent}%. "
            "What is the sale price in dollars?"
        )
        return question + " Round to the nearest cent.", price * (100 - percent) / 100
    percent = rng.choice((5, 6, 7, 8, 9, 12, 20))
    question = (
        f"A {item} costs ${price:.2f} before a sales tax of {percent}%. "
        "What is the price including tax, in dollars?"
    )
    return question + " Round to the nearest cent.", price * (100 + percent) / 100


def _rate(rng: random.Random) -> Problem:
    given, asked = rng.choice(RATES)
    rate, time = rng.randint(6, 95), Decimal(rng.randint(2, 30)) / rng.choice((1, 2))
    shown = f"{time.normalize():f}"
    return f"{given.format(rate=rate)}. How many {asked.format(time=shown)}?", rate * time


def _split(rng: random.Random) -> Problem:
    bill = Decimal(rng.randrange(3000, 40000)) / 100
    tip, people = rng.choice((0, 10, 12, 15, 18, 20)), rng.randint(2, 8)
    tipped = f" plus a {tip}% tip" if tip else ""
    question = (
        f"A dinner bill of ${bill:.2f}{tipped} is split evenly between {people} friends. "
        "How much does each friend pay, in dollars, rounded to the nearest cent?"
    )
    return question, bill * (100 + tip) / 100 / people


SUBTYPES: dict[str, Callable[[random.Random], Problem]] = {
    "shopping": _shopping,
    "conversion": _conversion,
    "percentage": _percentage,
    "rate": _rate,
    "split": _split,
}


def _answer(value: Decimal) -> int | float:
    rounded = value.quantize(CENT, rounding=ROUND_HALF_UP)
    return int(rounded) if rounded == rounded.to_integral_value() else float(rounded)


def generate(rng: random.Random, size: int) -> list[TaskItem]:
    """Subtypes rotate so every prefix of the pack is balanced between them."""
    kinds = list(SUBTYPES)
    items = []
    for n in range(size):
        kind = kinds[n % len(kinds)]
        question, value = SUBTYPES[kind](rng)
        items.append(
            TaskItem(
                id=f"arithmetic-{n}",
                task="arithmetic",
                messages=[{"role": "user", "content": question + SUFFIX}],
                expected=_answer(value),
                grader=GraderSpec(kind="numeric", tolerance=0.01),
                tags=["arithmetic", kind],
            )
        )
    return items
