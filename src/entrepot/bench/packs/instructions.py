"""The `instructions` pack: short writing tasks with constraints a program can check.

Each item asks for something mundane and adds one to three constraints (word limits, lower case,
JSON only, words to include or avoid, a fixed opening or closing, a sentence limit). The
constraints are chosen so they never contradict each other, and the grader checks them rather
than the prose, so the score measures following instructions, not taste.
"""

from __future__ import annotations

import random
from typing import Any

from entrepot.bench.schema import GraderSpec, TaskItem

DESCRIPTION = "Instruction following: word and sentence limits, case, JSON, required words"

# (topic, words worth asking for, words the topic invites that can be forbidden)
TOPICS = (
    ("making a cup of tea", ("kettle", "mug", "steep"), ("water", "sugar")),
    ("watering houseplants", ("soil", "drainage", "schedule"), ("water", "leaves")),
    ("packing for a weekend trip", ("socks", "charger", "toothbrush"), ("bag", "clothes")),
    ("getting through a rainy Monday", ("umbrella", "coffee", "commute"), ("rain", "wet")),
    ("cleaning a kitchen", ("sponge", "counter", "dishes"), ("clean", "soap")),
    ("walking a dog", ("leash", "park", "treats"), ("dog", "walk")),
    ("planning a grocery list", ("bread", "budget", "vegetables"), ("food", "shop")),
    ("fixing a squeaky door", ("hinge", "oil", "screwdriver"), ("door", "noise")),
    ("starting a vegetable garden", ("seeds", "compost", "sunlight"), ("plant", "grow")),
    ("organising a desk", ("drawer", "cables", "notebook"), ("tidy", "clutter")),
    ("baking simple bread", ("flour", "yeast", "oven"), ("dough", "bake")),
    ("choosing a library book", ("shelf", "author", "genre"), ("story", "novel")),
)
TASKS = (
    "Write a short paragraph about {topic}.",
    "Give some practical advice on {topic}.",
    "Describe {topic} to a friend who has never done it.",
    "Explain what matters most when {topic}.",
)
OPENINGS = ("In short,", "Honestly,", "Here is my take:", "Quick answer:")
CLOSINGS = ("That is all.", "Hope this helps!", "Thanks for reading.", "Over and out.")
# Constraints that a JSON-only answer cannot meaningfully satisfy alongside being pure JSON.
NOT_WITH_JSON = {"starts_with", "ends_with", "max_sentences", "min_words"}
KINDS = (
    "max_words",
    "min_words",
    "lowercase",
    "json_only",
    "must_include",
    "must_not_include",
    "starts_with",
    "ends_with",
    "max_sentences",
)


def _compatible(kind: str, chosen: list[str]) -> bool:
    if kind == "json_only":
        return not NOT_WITH_JSON.intersection(chosen)
    return not ("json_only" in chosen and kind in NOT_WITH_JSON)


def _pick(rng: random.Random) -> list[str]:
    wanted = rng.randint(1, 3)
    chosen: list[str] = []
    for kind in rng.sample(KINDS, len(KINDS)):
        if len(chosen) < wanted and _compatible(kind, chosen):
            chosen.append(kind)
    return chosen


def _constraints(
    rng: random.Random, kinds: list[str], include: tuple[str, ...], avoid: tuple[str, ...]
) -> dict[str, Any]:
    """Values for `kinds`; bounds leave room for each other (min words below max words)."""
    lowercase = "lowercase" in kinds
    values: dict[str, Any] = {}
    if "max_words" in kinds:
        values["max_words"] = rng.randrange(30, 85, 5)
    if "min_words" in kinds:
        ceiling = values.get("max_words", 135) - 15
        values["min_words"] = rng.randrange(10, ceiling, 5)
    if lowercase:
        values["lowercase"] = True
    if "json_only" in kinds:
        values["json_only"] = True
    if "must_include" in kinds:
        values["must_include"] = rng.sample(include, rng.randint(1, 2))
    if "must_not_include" in kinds:
        values["must_not_include"] = rng.sample(avoid, rng.randint(1, 2))
    for kind, phrases in (("starts_with", OPENINGS), ("ends_with", CLOSINGS)):
        if kind in kinds:
            phrase = rng.choice(phrases)
            values[kind] = phrase.lower() if lowercase else phrase
    if "max_sentences" in kinds:
        values["max_sentences"] = rng.randint(1, 4)
    return values


def _quoted(words: list[str], joiner: str) -> str:
    quoted = [f'"{word}"' for word in words]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} {joiner} {quoted[-1]}"


def _rule(kind: str, value: Any) -> str:
    if kind == "max_words":
        return f"Use at most {value} words."
    if kind == "min_words":
        return f"Use at least {value} words."
    if kind == "lowercase":
        return "Write everything in lowercase; use no capital letters at all."
    if kind == "json_only":
        return (
            'Reply with a single JSON object only, with your text under the key "answer" '
            "(no other text and no code fences)."
        )
    if kind == "must_include":
        return f"Include the word(s) {_quoted(value, 'and')}."
    if kind == "must_not_include":
        return f"Do not use the word(s) {_quoted(value, 'or')} anywhere."
    if kind == "starts_with":
        return f'Begin your response with exactly "{value}".'
    if kind == "ends_with":
        return f'End your response with exactly "{value}", with nothing after it.'
    return f"Use no more than {value} sentence(s)."


def generate(rng: random.Random, size: int) -> list[TaskItem]:
    """Each item draws its topic, task wording and constraint set independently."""
    items = []
    for n in range(size):
        topic, include, avoid = rng.choice(TOPICS)
        kinds = _pick(rng)
        values = _constraints(rng, kinds, include, avoid)
        rules = "\n".join(f"- {_rule(kind, values[kind])}" for kind in KINDS if kind in values)
        prompt = f"{rng.choice(TASKS).format(topic=topic)}\n\nRules:\n{rules}"
        items.append(
            TaskItem(
                id=f"instructions-{n}",
                task="instructions",
                messages=[{"role": "user", "content": prompt}],
                expected=None,
                grader=GraderSpec(kind="normalised", constraints=values),
                tags=["instructions", "+".join(sorted(values))],
            )
        )
    return items
