"""Confidence intervals and the comparisons built on them.

Percentile bootstrap (numpy, seeded so a report is reproducible); the quality ratio resamples
items *paired* — both models' scores on the same resampled items — because the question is how
the two compare on the same work, not on two independent samples."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from entrepot.bench.schema import Interval

WIDE = 0.25


def bootstrap_mean(
    scores: Sequence[float], *, resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Interval:
    if not scores:
        raise ValueError("no scores to summarise")
    values = np.asarray(scores, dtype=float)
    estimate = float(values.mean())
    if len(values) == 1 or float(values.min()) == float(values.max()):
        return Interval(estimate=estimate, low=estimate, high=estimate)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(estimate=estimate, low=float(low), high=float(high))


def paired_ratio(
    reference: Sequence[float],
    candidate: Sequence[float],
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    if len(reference) != len(candidate) or not reference:
        raise ValueError("paired scores must be aligned and non-empty")
    ref = np.asarray(reference, dtype=float)
    cand = np.asarray(candidate, dtype=float)
    if ref.mean() == 0:
        raise ValueError("the reference scored zero; a ratio is undefined")
    estimate = float(cand.mean() / ref.mean())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ref), (resamples, len(ref)))
    ref_means, cand_means = ref[picks].mean(axis=1), cand[picks].mean(axis=1)
    usable = ref_means > 0
    ratios = cand_means[usable] / ref_means[usable]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return Interval(estimate=estimate, low=float(low), high=float(high))


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else 0.0


def pareto_frontier(points: Sequence[tuple[str, float, float]]) -> set[str]:
    """Models no other model beats on both cost (lower) and quality (higher)."""
    frontier = set()
    for name, cost, quality in points:
        dominated = any(
            other_cost <= cost
            and other_quality >= quality
            and (other_cost < cost or other_quality > quality)
            for other, other_cost, other_quality in points
            if other != name
        )
        if not dominated:
            frontier.add(name)
    return frontier


def headline(
    model: str,
    reference: str,
    quality: Interval,
    cost_ratio: float | None,
    items: int,
    price_date: str | None,
) -> str:
    """One sentence, worded only as strongly as the interval allows."""
    dated = f"prices of {price_date}" if price_date else "prices undated"
    span = f"{quality.low:.0%}–{quality.high:.0%}"
    if quality.high - quality.low > WIDE:
        return (
            f"{model} vs {reference}: on {items} items the 95% interval ({span}) is too wide"
            f" to conclude; run more items ({_cost_phrase(cost_ratio)}, {dated})"
        )
    if quality.low <= 1.0 <= quality.high:
        verdict = f"{model} matches {reference}'s score within the interval ({span})"
    elif quality.high < 1.0:
        verdict = f"{model} reaches {quality.estimate:.0%} ({span}) of {reference}'s score"
    else:
        verdict = f"{model} scores {quality.estimate:.0%} ({span}) of {reference}'s score"
    return f"{verdict} at {_cost_phrase(cost_ratio)} on {items} items, {dated}"


def _cost_phrase(ratio: float | None) -> str:
    if ratio is None:
        return "a cost not comparable (unpriced)"
    if abs(ratio - 1) < 0.05:
        return "the same cost"
    if ratio > 1:
        return f"{ratio:.1f}× the cost"
    if ratio > 0.5:
        return f"{ratio:.0%} of the cost"
    if ratio == 0:
        return "no cost"
    denominator = Fraction(1 / ratio).limit_denominator(1)
    return f"1/{max(2, round(float(denominator)))} of the cost"
