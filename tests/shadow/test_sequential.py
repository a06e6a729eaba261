"""The live verdict's error rates, by simulation with known win rates: a candidate worse than
the incumbent by the margin or more is called non-inferior at most 5% of the time, however
often the verdict is read (every request here), and how many requests a verdict takes."""

from __future__ import annotations

import numpy as np
import pytest

from entrepot.shadow.judge import difference
from entrepot.shadow.sequential import bounds_path, first_decision, verdict

SIMULATIONS = 400
HORIZON = 3000
MARGIN = 0.1
TIES = 0.3


def simulate(mean: float, seed: int) -> list[tuple[str, int]]:
    """`SIMULATIONS` sequences of judged pairs (win +1, tie 0, loss -1) whose mean difference is
    `mean`, each watched after every request until its first verdict."""
    rng = np.random.default_rng(seed)
    wins, losses = (1 - TIES + mean) / 2, (1 - TIES - mean) / 2
    outcomes = []
    for _ in range(SIMULATIONS):
        pairs = rng.choice([1.0, 0.0, -1.0], size=HORIZON, p=[wins, TIES, losses])
        outcomes.append(first_decision(pairs.tolist(), MARGIN))
    return outcomes


def rate(outcomes: list[tuple[str, int]], state: str) -> float:
    return sum(1 for s, _ in outcomes if s == state) / len(outcomes)


@pytest.mark.parametrize("worse_by", [0.0, 0.05])
def test_a_worse_candidate_is_rarely_called_non_inferior(worse_by: float) -> None:
    outcomes = simulate(-MARGIN - worse_by, seed=11)
    false_rate = rate(outcomes, "non-inferior")
    print(f"mean {-MARGIN - worse_by:+.2f}: false non-inferior {false_rate:.4f}")
    assert false_rate <= 0.05


@pytest.mark.parametrize(
    ("mean", "verdict_state"), [(0.0, "non-inferior"), (0.1, "non-inferior"), (-0.3, "inferior")]
)
def test_how_many_requests_a_verdict_takes(mean: float, verdict_state: str) -> None:
    outcomes = simulate(mean, seed=12)
    reached = [n for s, n in outcomes if s == verdict_state]
    wrong = "inferior" if verdict_state == "non-inferior" else "non-inferior"
    print(
        f"mean {mean:+.2f}, margin {MARGIN}: {verdict_state} in {len(reached)}/{SIMULATIONS}"
        f" within {HORIZON}, median {np.median(reached):.0f} requests,"
        f" 90th percentile {np.percentile(reached, 90):.0f}; {wrong} {rate(outcomes, wrong):.4f}"
    )
    assert len(reached) >= 0.8 * SIMULATIONS
    assert rate(outcomes, wrong) <= 0.05


def test_the_sequence_covers_the_mean_and_narrows() -> None:
    rng = np.random.default_rng(3)
    pairs = rng.choice([1.0, 0.0, -1.0], size=2000, p=[0.4, 0.3, 0.3]).tolist()
    lows, highs = bounds_path(pairs)
    assert np.all(np.diff(lows) >= 0) and np.all(np.diff(highs) <= 0)
    assert lows[-1] < 0.1 < highs[-1]
    assert highs[99] - lows[99] > highs[-1] - lows[-1]
    assert verdict(pairs, 0.03).state == "non-inferior"
    assert verdict([], 0.03).state == "undecided"


def test_a_judge_disagreeing_with_itself_is_a_tie() -> None:
    assert difference("A", "B") == 1.0  # the candidate won as A, and as B
    assert difference("B", "A") == -1.0
    assert difference("A", "A") == 0.0  # the first position won both times: order bias
    assert difference("tie", "B") == 0.0
