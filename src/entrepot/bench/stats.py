"""Confidence intervals and the comparisons built on them.

Percentile bootstrap (numpy, seeded so a report is reproducible); the quality ratio resamples
items *paired* — both models' scores on the same resampled items — because the question is how
the two compare on the same work, not on two independent samples.

Rates (how often a model refuses) use Wilson score intervals instead: a bootstrap of 0 out of 30
collapses to [0, 0], while Wilson still says the true rate could be up to 11%. The difference of
two rates (a topic against its controls) uses Newcombe's hybrid score interval built on them."""

from __future__ import annotations

import math
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


Z95 = 1.959963984540054


def wilson(count: int, n: int, z: float = Z95) -> Interval:
    """Interval for a proportion `count / n`; an empty sample is the whole range [0, 1]."""
    if not 0 <= count <= n:
        raise ValueError(f"a count of {count} out of {n} is not a proportion")
    if n == 0:
        return Interval(estimate=0.0, low=0.0, high=1.0)
    p = count / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if count == 0 else max(0.0, centre - half)
    high = 1.0 if count == n else min(1.0, centre + half)
    return Interval(estimate=p, low=low, high=high)


def rate_difference(first: tuple[int, int], second: tuple[int, int]) -> Interval:
    """Newcombe's interval (method 10) for `first` rate minus `second`, each (count, n)."""
    a, b = wilson(*first), wilson(*second)
    d = a.estimate - b.estimate
    low = d - math.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    high = d + math.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    return Interval(estimate=d, low=max(-1.0, low), high=min(1.0, high))


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Agreement of two raters beyond chance; None when chance agreement is already total."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(1 for a, b in pairs if a == b) / n
    labels = {label for pair in pairs for label in pair}
    expected = sum(
        (sum(1 for a, _ in pairs if a == label) / n) * (sum(1 for _, b in pairs if b == label) / n)
        for label in labels
    )
    return None if expected == 1 else (observed - expected) / (1 - expected)


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
