"""Model-backed grading helpers: an LLM judge with a published rubric, and embeddings for
semantic similarity. Both run through the same provider layer as the models under test, and
the judge's cost is counted separately so it never inflates a candidate's bill."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from entrepot.bench.cache import deployment_identity
from entrepot.bench.graders import EmbedFn, JudgeFn
from entrepot.bench.runner import BenchModel
from entrepot.ledger.pricing import cost_nanos
from entrepot.types import JSON, TokenUsage

JUDGE_PROMPT = """You are grading an answer against a rubric. Reply with a one-line reason, then
a last line of the form "Score: N" where N is an integer from 0 (fails the rubric) to 10 (fully
meets it).

Rubric:
{rubric}

Question:
{question}

Reference answer (may be empty):
{expected}

Answer to grade:
{answer}
"""
SCORE = re.compile(r"score\s*[:=]\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


async def ask(model: BenchModel, prompt: str, max_tokens: int = 200) -> tuple[str, int]:
    """One deterministic question to a helper model: (its answer, the call's cost in nanos)."""
    response = await model.provider.chat(
        {
            "model": model.config.target,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": max_tokens,
        }
    )
    usage = TokenUsage.from_openai(response.get("usage")) or TokenUsage()
    cost = cost_nanos(usage, model.price) if model.price is not None else 0
    text = str(((response.get("choices") or [{}])[0].get("message") or {}).get("content") or "")
    return text, cost


@dataclass(frozen=True, slots=True)
class _ModelJudge:
    """A `JudgeFn` bound to one model; its `identity` keys the grades it gave in the cache."""

    model: BenchModel

    @property
    def identity(self) -> JSON:
        return {**deployment_identity(self.model.config), "prompt": JUDGE_PROMPT}

    async def __call__(
        self, rubric: str, answer: str, question: str | None, expected: Any
    ) -> tuple[float, int]:
        prompt = JUDGE_PROMPT.format(
            rubric=rubric, question=question or "", expected=expected or "", answer=answer
        )
        text, cost = await ask(self.model, prompt)
        found = SCORE.findall(text)
        score = min(max(float(found[-1]) / 10, 0.0), 1.0) if found else 0.0
        return score, cost


@dataclass(frozen=True, slots=True)
class _ModelEmbed:
    """An `EmbedFn` bound to one model; its `identity` keys the grades it gave in the cache."""

    model: BenchModel

    @property
    def identity(self) -> JSON:
        return deployment_identity(self.model.config)

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        body = {"model": self.model.config.target, "input": texts}
        response = await self.model.provider.embed(body)
        ordered = sorted(response.get("data") or [], key=lambda d: d["index"])
        return [list(map(float, d["embedding"])) for d in ordered]


def make_judge(model: BenchModel) -> JudgeFn:
    return _ModelJudge(model)


def make_embed(model: BenchModel) -> EmbedFn:
    return _ModelEmbed(model)
