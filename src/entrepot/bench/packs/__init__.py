"""Built-in task packs: synthetic, seeded question sets with ground truth computed by code.

They let a team compare models on common work (arithmetic, dates, extraction, ticket triage,
instruction following) before writing its own tasks, without downloading data sets: every item
is generated from `random.Random(seed)`, so the same seed always gives the same items and a
report can be reproduced, while another seed gives fresh items when a model may have seen the
old ones. Items are generated in order, so a smaller `size` is a prefix of a larger one.

Beside them, public benchmarks (GSM8K, GPQA Diamond, AIME 2025) are packs too, read from an
optional data package (see `public`): their items are the data set's, whatever the seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from entrepot.bench.packs import arithmetic, dates, extraction, instructions, public, tickets
from entrepot.bench.schema import TaskItem
from entrepot.exceptions import ConfigError

DEFAULT_SIZE = 120

Generator = Callable[[random.Random, int], list[TaskItem]]


@dataclass(frozen=True)
class PackInfo:
    """What `entrepot bench` lists for a pack; `task` is the task name its items carry."""

    name: str
    description: str
    items: int
    task: str
    generate: Generator = field(repr=False, compare=False)


def _info(name: str, description: str, generate: Generator) -> PackInfo:
    return PackInfo(name, description, DEFAULT_SIZE, name, generate)


PACKS: dict[str, PackInfo] = {
    info.name: info
    for info in (
        _info("arithmetic", arithmetic.DESCRIPTION, arithmetic.generate),
        _info("dates", dates.DESCRIPTION, dates.generate),
        _info("extraction", extraction.DESCRIPTION, extraction.generate),
        _info("tickets", tickets.DESCRIPTION, tickets.generate),
        _info("instructions", instructions.DESCRIPTION, instructions.generate),
        PackInfo("gsm8k", public.GSM8K_DESCRIPTION, public.GSM8K_ITEMS, "gsm8k", public.gsm8k),
        PackInfo(
            "gpqa-diamond",
            public.GPQA_DESCRIPTION,
            public.GPQA_ITEMS,
            "gpqa-diamond",
            public.gpqa_diamond,
        ),
        PackInfo(
            "aime2025", public.AIME_DESCRIPTION, public.AIME_ITEMS, "aime2025", public.aime2025
        ),
    )
}


def list_packs() -> list[PackInfo]:
    return list(PACKS.values())


def load_pack(name: str, seed: int = 0, size: int | None = None) -> list[TaskItem]:
    """The pack's items for `seed`; `size` defaults to the pack's item count."""
    info = PACKS.get(name)
    if info is None:
        raise ConfigError(f"unknown task pack {name!r}; known packs: {', '.join(PACKS)}")
    count = info.items if size is None else size
    if count < 1:
        raise ConfigError(f"task pack size must be at least 1, got {count}")
    return info.generate(random.Random(seed), count)
