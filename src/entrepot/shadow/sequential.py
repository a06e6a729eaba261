"""The live verdict: is the candidate non-inferior to the incumbent within a margin δ?

Each graded pair gives a difference d in [-1, 1]: the candidate's score minus the incumbent's
(a task grader's two scores), or +1 / 0 / -1 when a judge preferred the candidate / neither /
the incumbent. The question is about the mean difference μ: non-inferior when μ > -δ.

People look at this every day, and stop when it says something: a fixed-sample test read
repeatedly would declare a worse candidate "non-inferior" far more often than its α. So the
interval is a *confidence sequence* — it covers μ at every n at once, with probability 1 - α —
namely the hedged capital process of Waudby-Smith & Ramdas, "Estimating means of bounded random
variables by betting" (JRSS B, 2024; arXiv:2010.09686), Theorem 3 with θ = 1/2, predictable
plug-in bets (their λ^PrPl, truncated at c = 1/2) and the running intersection over n. It is
computed for y = (d + 1) / 2 in [0, 1] on a grid of candidate means, each bound rounded outwards
to the next grid point, so the grid never makes it narrower than the exact sequence.

Verdict: non-inferior once the lower bound of μ exceeds -δ; inferior once the upper bound is
below -δ; undecided until then. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
State = Literal["undecided", "non-inferior", "inferior"]

GRID = np.linspace(0.0, 1.0, 2001)[1:-1]  # candidate means of y, strictly inside (0, 1)
TRUNCATION = 0.5  # c: the largest fraction of its capital a bet may stake
BLOCK = 512  # rows computed at once, so memory stays bounded however long the sequence


@dataclass(frozen=True, slots=True)
class Verdict:
    """`low` and `high` bound the mean difference (candidate minus incumbent) at level 1 - α."""

    state: State
    n: int
    mean: float
    low: float
    high: float
    margin: float
    alpha: float


def _bets(y: Floats, alpha: float) -> Floats:
    """λ_t from the observations before t only (predictable), as WSR's plug-in rule sets it."""
    n = len(y)
    t = np.arange(1, n + 1, dtype=np.float64)
    means = (0.5 + np.cumsum(y)) / (t + 1)  # μ̂_t, after t observations
    variances = (0.25 + np.cumsum((y - means) ** 2)) / (t + 1)  # σ̂²_t
    previous_variances = np.concatenate(([0.25], variances[:-1]))
    return np.sqrt(2 * math.log(2 / alpha) / (previous_variances * t * np.log(t + 1)))


def bounds_path(differences: Sequence[float], alpha: float = 0.05) -> tuple[Floats, Floats]:
    """The confidence sequence for the mean difference after each observation: (lows, highs),
    each of length n, already intersected over time (so lows never fall, highs never rise)."""
    y = (np.clip(np.asarray(differences, dtype=np.float64), -1.0, 1.0) + 1.0) / 2.0
    n = len(y)
    lows, highs = np.empty(n), np.empty(n)
    if n == 0:
        return lows, highs
    bets = _bets(y, alpha)
    threshold = math.log(1 / alpha)
    cap_plus, cap_minus = TRUNCATION / GRID, TRUNCATION / (1 - GRID)
    log_plus, log_minus = np.zeros(len(GRID)), np.zeros(len(GRID))
    half = math.log(0.5)
    for start in range(0, n, BLOCK):
        rows = slice(start, min(n, start + BLOCK))
        centred = y[rows, None] - GRID[None, :]
        bet = bets[rows, None]
        plus = np.cumsum(np.log1p(np.minimum(bet, cap_plus) * centred), axis=0) + log_plus
        minus = np.cumsum(np.log1p(-np.minimum(bet, cap_minus) * centred), axis=0) + log_minus
        log_plus, log_minus = plus[-1], minus[-1]
        kept = np.maximum(half + plus, half + minus) < threshold
        lows[rows], highs[rows] = _edges(kept)
    lows = np.maximum.accumulate(lows) * 2 - 1
    highs = np.minimum.accumulate(highs) * 2 - 1
    return lows, highs


def _edges(kept: npt.NDArray[np.bool_]) -> tuple[Floats, Floats]:
    """Per row, the bounds of the means not rejected, rounded outwards to the next grid point
    (0 or 1 past the grid's ends); an empty row gets (1, 0), which the running intersection
    then leaves to the rows before it."""
    any_kept = kept.any(axis=1)
    first = np.argmax(kept, axis=1)
    last = len(GRID) - 1 - np.argmax(kept[:, ::-1], axis=1)
    padded = np.concatenate(([0.0], GRID, [1.0]))
    low = np.where(any_kept, padded[first], 1.0)  # padded[first] is the grid point below
    high = np.where(any_kept, padded[last + 2], 0.0)
    return low, high


def verdict(differences: Sequence[float], margin: float, alpha: float = 0.05) -> Verdict:
    """Where the evidence stands after all of `differences`, in the order they were observed:
    the state is the test at the margin (see `decisions`), the bounds are the whole sequence's."""
    n = len(differences)
    if n == 0:
        return Verdict("undecided", 0, 0.0, -1.0, 1.0, margin, alpha)
    lows, highs = bounds_path(differences, alpha)
    state, _ = first_decision(differences, margin, alpha)
    mean = float(np.mean(differences))
    return Verdict(state, n, mean, float(lows[-1]), float(highs[-1]), margin, alpha)


def decisions(differences: Sequence[float], margin: float, alpha: float = 0.05) -> Floats:
    """After each observation: +1 once the margin is out of the sequence from below (the mean
    is above -δ: non-inferior), -1 once from above (inferior), 0 before. The same hedged
    capital process as `bounds_path`, at the margin's point alone and so exact and O(n): what
    a verdict needs, and all a simulation of thousands of sequences can afford."""
    y = (np.clip(np.asarray(differences, dtype=np.float64), -1.0, 1.0) + 1.0) / 2.0
    if len(y) == 0:
        return np.zeros(0)
    point = (1.0 - margin) / 2.0
    bets = _bets(y, alpha)
    centred = y - point
    plus = np.cumsum(np.log1p(np.minimum(bets, TRUNCATION / point) * centred))
    minus = np.cumsum(np.log1p(-np.minimum(bets, TRUNCATION / (1 - point)) * centred))
    threshold = math.log(2 / alpha)  # θ = 1/2: each side must reach 2/α
    above = np.maximum.accumulate(plus >= threshold)
    below = np.maximum.accumulate(minus >= threshold)
    return np.where(above, 1.0, np.where(below, -1.0, 0.0))


def first_decision(
    differences: Sequence[float], margin: float, alpha: float = 0.05
) -> tuple[State, int]:
    """The first verdict the sequence reaches and after how many observations ("undecided" and
    n if it reaches none): what someone watching it every day would have concluded. Once
    reached, a verdict stands (the running intersection never lets the margin back in)."""
    marks = decisions(differences, margin, alpha)
    decided = np.flatnonzero(marks)
    if len(decided) == 0:
        return "undecided", len(differences)
    at = int(decided[0])
    return ("non-inferior" if marks[at] > 0 else "inferior"), at + 1
