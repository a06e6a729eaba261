"""Asking the probes and classifying the answers.

Asking goes through the bench's runner — the same provider layer, pacing, retries, response
cache keyed by the full request, and resumption — with grading turned off: an audit classifies
answers as a whole run afterwards, by rules and then, optionally, by a judge whose verdicts are
cached in the run's folder too (keyed by the judge, the rubric, the question, the key facts and
the answer), so re-running an audit never pays for an answer twice, and an edited probe is
asked again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from entrepot.audit.classify import classify, facts
from entrepot.audit.judge import RUBRIC_VERSION, judge_answer
from entrepot.audit.schema import Pack, Probe, ProbeResult
from entrepot.bench.cache import JUDGEMENTS, ResponseStore, deployment_identity
from entrepot.bench.runner import BenchModel, BenchRunner, RunOptions
from entrepot.bench.schema import ItemResult, TaskItem
from entrepot.exceptions import ConfigError, GatewayError
from entrepot.routing.refusal import split_reasoning

CONTROL = "control"


@dataclass(frozen=True, slots=True)
class ProbeRef:
    """One probe of one pack in one language: the unit an audit asks each model."""

    pack: Pack
    topic: str
    probe: Probe
    language: str

    @property
    def control(self) -> bool:
        return self.topic == CONTROL

    @property
    def item_id(self) -> str:
        return f"{self.pack.name}/{self.probe.id}/{self.language}"

    @property
    def question(self) -> str:
        return self.probe.phrasings[self.language].question

    def task_item(self) -> TaskItem:
        return TaskItem(
            id=self.item_id,
            task=f"{self.pack.name}/{self.topic}",
            messages=[{"role": "user", "content": self.question}],
        )


def select_probes(
    packs: list[Pack], languages: list[str] | None = None, limit: int | None = None
) -> list[ProbeRef]:
    """Every probe of every pack in each requested language the pack has; `limit` keeps the
    first N probes of each topic and the first N controls of each pack."""
    wanted = set(languages or [])
    unknown = wanted - {lang for pack in packs for lang in pack.languages}
    if unknown:
        raise ConfigError(f"no selected pack has language(s) {', '.join(sorted(unknown))}")
    refs = []
    for pack in packs:
        for language in pack.languages:
            if wanted and language not in wanted:
                continue
            for topic in pack.topics:
                refs += [ProbeRef(pack, topic.id, p, language) for p in topic.probes[:limit]]
            refs += [ProbeRef(pack, CONTROL, p, language) for p in pack.controls[:limit]]
    if not refs:
        raise ConfigError("no probes selected: check --packs and --languages")
    return refs


def to_result(ref: ProbeRef, answer: ItemResult) -> ProbeResult:
    """The rules' verdict on one collected answer; a call the gateway's policy refused has
    none, as no model saw the question."""
    ruled = None
    if answer.refused_by_policy is None:
        ruled = classify(
            ref.probe,
            ref.language,
            answer.answer,
            reasoning=answer.reasoning,
            error=answer.error,
            finish_reason=answer.finish_reason,
        )
    visible, thought = split_reasoning(answer.answer or "", answer.reasoning)
    return ProbeResult(
        model=answer.model,
        pack=ref.pack.name,
        jurisdiction=ref.pack.jurisdiction,
        topic=ref.topic,
        probe=ref.probe.id,
        language=ref.language,
        control=ref.control,
        question=ref.question,
        answer=visible if answer.error is None else None,
        reasoning=thought,
        error=answer.error,
        refused_by_policy=answer.refused_by_policy,
        rule_verdict=ruled.verdict if ruled else None,
        rule_detail=ruled.detail if ruled else None,
        verdict=ruled.verdict if ruled else None,
        facts_found=ruled.facts_found if ruled else 0,
        facts_total=ruled.facts_total if ruled else len(facts(ref.probe, ref.language)[0]),
        cost_nanos=answer.cost_nanos,
    )


async def collect(
    models: list[BenchModel],
    refs: list[ProbeRef],
    options: RunOptions,
    on_answer: Callable[[ItemResult], object] | None = None,
) -> list[ProbeResult]:
    runner = BenchRunner(
        models,
        [ref.task_item() for ref in refs],
        options,
        on_result=on_answer,
        grade_answers=False,
    )
    rank = {alias: i for i, alias in enumerate(m.alias for m in models)}
    position = {ref.item_id: i for i, ref in enumerate(refs)}
    answers = sorted(await runner.run(), key=lambda a: (rank[a.model], position[a.item_id]))
    return [to_result(refs[position[a.item_id]], a) for a in answers]


def needs_judge(result: ProbeResult) -> bool:
    """Errors and host filters are settled by the rules; the judge reads what a model said."""
    return result.error is None and bool((result.answer or "").strip())


async def judge_results(
    judge: BenchModel,
    refs: list[ProbeRef],
    results: list[ProbeResult],
    out: Path,
    concurrency: int = 4,
    on_judged: Callable[[ProbeResult], object] | None = None,
) -> None:
    """Ask the judge about every answer the model gave (not about errors or host filters, which
    the rules settle), and let its verdict decide; cached per judge, rubric and answer."""
    by_id = {(ref.pack.name, ref.probe.id, ref.language): ref for ref in refs}
    judged_by = deployment_identity(judge.config)
    store = ResponseStore(out / JUDGEMENTS)
    limit = asyncio.Semaphore(concurrency)

    async def one(result: ProbeResult) -> None:
        ref = by_id[(result.pack, result.probe, result.language)]
        key_facts = facts(ref.probe, ref.language)[0]
        answer = result.answer or ""
        key = ResponseStore.key(
            "judgement",
            judged_by,
            {"rubric": RUBRIC_VERSION, "q": result.question, "f": key_facts, "a": answer},
        )
        stored = store.get(key)
        if stored is None:
            async with limit:
                try:
                    verdict, reason, cost = await judge_answer(
                        judge, result.question, key_facts, answer
                    )
                except GatewayError as exc:
                    result.judge_detail = f"judge failed: {exc.message}"
                    return
            stored = {"verdict": verdict, "reason": reason, "cost": cost}
            store.put(key, stored)
        result.judge_verdict = stored["verdict"]
        result.judge_detail = stored["reason"]
        result.judge_cost_nanos = int(stored["cost"])
        if result.judge_verdict is not None:
            result.verdict = result.judge_verdict
        if on_judged:
            on_judged(result)

    await judge.provider.start()
    try:
        await asyncio.gather(*(one(r) for r in results if needs_judge(r)))
    finally:
        await judge.provider.close()
        store.close()
