"""The `dates` pack: calendar and clock reasoning that models often get subtly wrong.

Ground truth comes from `datetime`, never from the model's own arithmetic. Dates are written in
several formats (ISO, "14 March 2031", "March 14, 2031") so a model has to read them rather than
pattern-match one layout; answers have one prescribed format so they can be compared exactly.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

from entrepot.bench.schema import GraderSpec, TaskItem

DESCRIPTION = "Weekdays, days between dates, date and clock arithmetic, ordering, leap years"

FIRST_DAY = dt.date(1950, 1, 1).toordinal()
LAST_DAY = dt.date(2049, 12, 31).toordinal()
# Spelled out here rather than with strftime("%B"), which follows the process locale.
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
JOURNEYS = ("A train departs", "A flight leaves", "A night bus sets off", "A ferry sails")

Question = tuple[str, object, GraderSpec]


def _date(rng: random.Random) -> dt.date:
    return dt.date.fromordinal(rng.randint(FIRST_DAY, LAST_DAY))


def _written(rng: random.Random, day: dt.date) -> str:
    style = rng.randrange(3)
    if style == 0:
        return day.isoformat()
    month = MONTHS[day.month - 1]
    return f"{day.day} {month} {day.year}" if style == 1 else f"{month} {day.day}, {day.year}"


def _weekday(rng: random.Random) -> Question:
    day = _date(rng)
    question = (
        f"What day of the week is {_written(rng, day)}? "
        "Answer with the weekday name only (for example: Monday)."
    )
    return question, WEEKDAYS[day.weekday()], GraderSpec(kind="normalised")


def _between(rng: random.Random) -> Question:
    start = _date(rng)
    end = start + dt.timedelta(days=rng.randint(1, 900))
    question = (
        f"How many days are there from {_written(rng, start)} to {_written(rng, end)}? "
        "Count the difference (the start date not included, the end date included). "
        "Answer with a whole number only."
    )
    # A day count is an integer: any other integer is at least 1 away.
    return question, (end - start).days, GraderSpec(kind="numeric", tolerance=0.5)


def _after(rng: random.Random) -> Question:
    start, days = _date(rng), rng.randint(2, 400)
    question = (
        f"What date is {days} days after {_written(rng, start)}? "
        "Answer with the date only, in YYYY-MM-DD format."
    )
    return question, (start + dt.timedelta(days=days)).isoformat(), GraderSpec(kind="normalised")


def _clock(rng: random.Random) -> Question:
    departs = dt.datetime(2024, 1, 1, rng.randint(14, 23), rng.randrange(0, 60, 5))
    hours, minutes = rng.randint(2, 11), rng.randrange(0, 60, 5)
    arrives = departs + dt.timedelta(hours=hours, minutes=minutes)
    question = (
        f"{rng.choice(JOURNEYS)} at {departs:%H:%M} and the journey takes {hours} hours "
        f"{minutes} minutes. At what time does it arrive? Use the 24-hour clock and answer "
        "with the time only, as HH:MM (for example 07:05)."
    )
    return question, f"{arrives:%H:%M}", GraderSpec(kind="normalised")


def _earlier(rng: random.Random) -> Question:
    first = _date(rng)
    second = first + dt.timedelta(days=rng.choice((-1, 1)) * rng.randint(1, 60))
    question = (
        "Which date is earlier?\n"
        f"A) {_written(rng, first)}\nB) {_written(rng, second)}\n"
        "Answer with the letter only."
    )
    return question, "A" if first < second else "B", GraderSpec(kind="choice")


def _is_leap(year: int) -> bool:
    try:
        dt.date(year, 2, 29)
    except ValueError:
        return False
    return True


def _leap(rng: random.Random) -> Question:
    # Mix the century rule cases in, since plain multiples of 4 alone test little.
    rule = rng.randrange(3)
    if rule == 0:
        year = rng.randrange(1604, 2400, 4)
    elif rule == 1:
        year = rng.randrange(1700, 2400, 100)
    else:
        year = rng.randint(1600, 2399)
    question = f"Is the year {year} a leap year in the Gregorian calendar? Answer yes or no only."
    return question, "yes" if _is_leap(year) else "no", GraderSpec(kind="normalised")


SUBTYPES: dict[str, Callable[[random.Random], Question]] = {
    "weekday": _weekday,
    "days_between": _between,
    "days_after": _after,
    "clock": _clock,
    "earlier": _earlier,
    "leap_year": _leap,
}


def generate(rng: random.Random, size: int) -> list[TaskItem]:
    """Subtypes rotate so every prefix of the pack is balanced between them."""
    kinds = list(SUBTYPES)
    items = []
    for n in range(size):
        kind = kinds[n % len(kinds)]
        question, expected, grader = SUBTYPES[kind](rng)
        items.append(
            TaskItem(
                id=f"dates-{n}",
                task="dates",
                messages=[{"role": "user", "content": question}],
                expected=expected,
                grader=grader,
                tags=["dates", kind],
            )
        )
    return items
