"""How a check's answers are compared with a take's, and when a substitution is probable.

Similarity of two answers: the Jaccard index of their sets of character 3-grams, whitespace
collapsed (1.0 for identical texts, near 0 for unrelated ones). It degrades gently with small
changes (a word swapped costs a few 3-grams), where exact match drops to 0 at once, so a host
whose answers vary a little is not mistaken for another model.

The noise floor is how much the model agrees with itself: each run (the take and the check) asks
every canary twice, and the floor is the mean similarity of the two samples of each run, over
canaries and both runs; its spread is the standard deviation of that per-canary self-agreement.
Under the same model, a check sample agrees with the take as much as the model agrees with
itself; under another model, much less.

The rule: a check sample is below the floor by `shortfall` = floor − its mean similarity to the
take's samples. A substitution is probable when, for some check sample, the shortfall exceeds the
margin: max(0.10, 3 standard errors of the per-canary shortfall). Per check sample, so a swap in
the middle of the check is caught too. Independently, a prompt's token count depends only on the
tokenizer and the chat template: when it differs on at least half of the canaries, the model
behind the alias is probably another.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from entrepot.store.fingerprints import StoredAnswer

SHINGLE = 3
MIN_MARGIN = 0.10
STANDARD_ERRORS = 3.0
# Share of canaries whose prompt token count changed from which a substitution is probable.
TOKENIZER_SHARE = 0.5

# One run's answers: per sample, the answer to each canary (by id).
Samples = Sequence[dict[str, StoredAnswer]]


def shingles(text: str) -> frozenset[str]:
    collapsed = " ".join(text.split())
    if len(collapsed) <= SHINGLE:
        return frozenset({collapsed})
    return frozenset(collapsed[i : i + SHINGLE] for i in range(len(collapsed) - SHINGLE + 1))


def similarity(first: str, second: str) -> float:
    """Jaccard index of the answers' character 3-gram sets (see the module's docstring)."""
    a, b = shingles(first), shingles(second)
    return len(a & b) / len(a | b)


def _exact(first: str, second: str) -> bool:
    return first.strip() == second.strip()


@dataclass(frozen=True, slots=True)
class CanaryAgreement:
    canary: str
    self_similarity: float
    # Per check sample: its mean similarity to the take's samples.
    cross: tuple[float, ...]
    tokens_changed: bool


@dataclass(frozen=True, slots=True)
class Agreement:
    canaries: tuple[CanaryAgreement, ...]
    exact_share: float
    floor_exact_share: float
    similarity: float
    per_sample: tuple[float, ...]
    floor: float
    floor_spread: float
    take_floor: float
    check_floor: float
    margin: float
    shortfall: float
    tokens_changed: int
    substituted: bool
    reason: str


def _self(samples: Samples, canary: str) -> list[float]:
    return [similarity(a[canary].answer, b[canary].answer) for a, b in combinations(samples, 2)]


def _canary(take: Samples, check: Samples, canary: str) -> CanaryAgreement:
    own = _self(take, canary) + _self(check, canary)
    cross = tuple(
        statistics.fmean(similarity(t[canary].answer, c[canary].answer) for t in take)
        for c in check
    )
    before = {t[canary].prompt_tokens for t in take}
    after = {c[canary].prompt_tokens for c in check}
    return CanaryAgreement(canary, statistics.fmean(own), cross, not before & after)


def _share(pairs: list[tuple[str, str]]) -> float:
    return sum(_exact(a, b) for a, b in pairs) / len(pairs)


def _within(samples: Samples, canaries: list[str]) -> list[tuple[str, str]]:
    return [(a[c].answer, b[c].answer) for c in canaries for a, b in combinations(samples, 2)]


def compare(take: Samples, check: Samples) -> Agreement:
    """The agreement of a check with a take, each of at least two samples of the same canaries."""
    assert len(take) >= 2 and len(check) >= 2, "the noise floor needs two samples per run"
    names = sorted(take[0])
    rows = tuple(_canary(take, check, name) for name in names)
    n = len(rows)
    floor = statistics.fmean(r.self_similarity for r in rows)
    per_sample = tuple(statistics.fmean(r.cross[j] for r in rows) for j in range(len(check)))
    # Per check sample: how far below the floor it is, and the margin its own spread allows.
    findings = []
    for j, agreement in enumerate(per_sample):
        differences = [r.self_similarity - r.cross[j] for r in rows]
        error = statistics.stdev(differences) / math.sqrt(n) if n > 1 else 0.0
        findings.append((floor - agreement, max(MIN_MARGIN, STANDARD_ERRORS * error), j))
    shortfall, margin, worst = max(findings, key=lambda f: f[0] - f[1])
    changed = sum(r.tokens_changed for r in rows)
    cross_pairs = [(t[c].answer, s[c].answer) for c in names for t in take for s in check]
    reasons = []
    if shortfall > margin:
        reasons.append(
            f"check sample {worst + 1} agrees {per_sample[worst]:.2f} with the fingerprint,"
            f" {shortfall:.2f} below the noise floor {floor:.2f} (margin {margin:.2f})"
        )
    if changed >= TOKENIZER_SHARE * n:
        reasons.append(
            f"prompt token counts differ on {changed} of {n} canaries"
            " (another tokenizer or chat template)"
        )
    return Agreement(
        canaries=rows,
        exact_share=_share(cross_pairs),
        floor_exact_share=_share(_within(take, names) + _within(check, names)),
        similarity=statistics.fmean(per_sample),
        per_sample=per_sample,
        floor=floor,
        floor_spread=statistics.stdev(r.self_similarity for r in rows) if n > 1 else 0.0,
        take_floor=statistics.fmean(s for name in names for s in _self(take, name)),
        check_floor=statistics.fmean(s for name in names for s in _self(check, name)),
        margin=margin,
        shortfall=shortfall,
        tokens_changed=changed,
        substituted=bool(reasons),
        reason="; ".join(reasons) or "within the noise floor",
    )


def self_agreement(samples: Samples) -> tuple[float, float]:
    """A run's agreement with itself: (mean similarity, exact-match share) of its samples."""
    names = sorted(samples[0])
    pairs = _within(samples, names)
    return statistics.fmean(similarity(a, b) for a, b in pairs), _share(pairs)
