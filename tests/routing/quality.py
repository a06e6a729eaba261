"""Models of known quality on the fake upstream, tasks that tell them apart, and a good_enough
route over them, shared by the tests of publishing evidence and of routing by it.

- `ref/big` (echo-model) answers every item right, at 10/30 per million tokens;
- `cand/mid` (echo-model too) answers every item right, at a tenth of the price;
- `cand/weak` (weak-on-hard) at a hundredth answers "I do not know" to an item saying "hard".

Task `faq` has no hard item: weak matches the reference exactly and, cheapest, is chosen.
Task `legal` has 2 hard items of 20: weak's estimate is 0.9 and its interval's lower bound
under 0.95, so `mid` is chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.conftest import Server, fake_model

ROUTE = "auto"
AS_OF = "2026-11-01"


def price(per_1m_in: str, per_1m_out: str) -> dict[str, str]:
    return {"input_per_1m": per_1m_in, "output_per_1m": per_1m_out, "as_of": AS_OF}


def models(fake: Server) -> list[dict[str, Any]]:
    return [
        fake_model(fake, "ref/big", "echo-model", price=price("10", "30")),
        fake_model(fake, "cand/mid", "echo-model", price=price("1", "3")),
        fake_model(fake, "cand/weak", "weak-on-hard", price=price("0.1", "0.3")),
    ]


def config(fake: Server, **extra: Any) -> dict[str, Any]:
    return {
        "models": models(fake),
        "breaker": {"failure_threshold": 1000},
        "routes": {
            ROUTE: {
                "strategy": "good_enough",
                "candidates": ["cand/weak", "cand/mid"],
                "reference": "ref/big",
                "min_quality": 0.95,
                "max_age_days": 30,
            }
        },
        **extra,
    }


def tasks(tmp: Path) -> list[str]:
    """Two task files: `faq` (nothing hard) and `legal` (2 hard items of 20)."""
    paths = []
    for task, hard in (("faq", ()), ("legal", (3, 11))):
        items = []
        for i in range(20):
            prompt = f"{task} {'hard ' if i in hard else ''}question {i}"
            items.append({"id": f"{task}-{i}", "prompt": prompt, "expected": f"echo: {prompt}"})
        path = tmp / f"{task}.yaml"
        path.write_text(yaml.safe_dump({"task": task, "grader": {"kind": "exact"}, "items": items}))
        paths.append(str(path))
    return paths


MODELS = ["ref/big", "cand/mid", "cand/weak"]
