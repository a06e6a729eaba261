"""Running items on models: concurrency and pacing per model, retries, and a persistent cache
keyed by the full request — a re-run or an interrupted run asks no model an answered question
again, while a changed prompt, model or setting is asked afresh.

The runner creates no model: it is handed each one as a `BenchModel`, whose provider is a way
through a gateway (`through_gateway`: the in-process pipeline, or a running gateway by URL), so
every call obeys the gateway's policy, keys, budgets and ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson

from entrepot.bench.cache import (
    ANSWERS,
    GRADES,
    RESULTS,
    ResponseStore,
    clear_run,
    grade_key,
    model_identity,
    request_key,
)
from entrepot.bench.graders import EmbedFn, JudgeFn, grade
from entrepot.bench.holds import Holds, budget_refused
from entrepot.bench.schema import Grade, ItemResult, TaskItem
from entrepot.config import ModelConfig, Price
from entrepot.exceptions import (
    EgressDeniedError,
    GatewayError,
    OverloadedError,
    RateLimitedError,
    UpstreamRejectedError,
)
from entrepot.ledger.hardware import HardwareRate
from entrepot.ledger.pricing import cost_nanos
from entrepot.providers.base import Provider
from entrepot.types import JSON, TokenUsage

DEFAULT_MAX_TOKENS = 512


@dataclass(slots=True)
class BenchModel:
    """A model under test or a grader's helper: `config` describes it (price, host, cache
    identity) and `provider` is the way to it, always through a gateway (see `through_gateway`)."""

    alias: str
    config: ModelConfig
    provider: Provider
    price: Price | None
    # What an hour of a local model's hardware costs (configured, given on the command line, or
    # from the ledger's dated reference), when it has no token price.
    hardware: HardwareRate | None
    # How many requests the model is sent at once when `config` does not say (a model reached
    # through a gateway by URL, whose `config` is the client's); see `slots`.
    parallel: int | None = None

    @property
    def slots(self) -> int:
        """How many requests the model is sent at once: a local model's `local.parallel`, a
        remote one's `max_concurrency` (its connection limit). More would only queue inside
        the gateway, and that wait would be measured as the model's latency."""
        if self.parallel is not None:
            return self.parallel
        if self.config.provider == "llama_cpp":
            return self.config.local.parallel
        return self.config.max_concurrency

    @property
    def price_date(self) -> str | None:
        """The token price's date, else the hardware reference's; None if neither says one."""
        if self.price is not None:
            return self.price.as_of.isoformat()
        as_of = self.hardware.as_of if self.hardware is not None else None
        return as_of.isoformat() if as_of is not None else None

    @property
    def currency(self) -> str:
        return self.price.currency if self.price else "USD"

    @property
    def cost_basis(self) -> str:
        if self.price is not None:
            return "tokens"
        return "hardware" if self.hardware is not None else "unpriced"


@dataclass(slots=True)
class RunOptions:
    """`concurrency` is per model; `fresh` forgets the out directory's earlier answers first."""

    out: Path
    concurrency: int = 8
    repeat: int = 1
    requests_per_minute: float | None = None
    retries: int = 3
    backoff_seconds: float = 0.5
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = DEFAULT_MAX_TOKENS
    fresh: bool = False


class Pacer:
    """Spaces request starts for one model so a provider's rate limit is respected up front."""

    def __init__(self, per_minute: float | None) -> None:
        self._interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self._interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self._interval
        if delay > 0:
            await asyncio.sleep(delay)


class _Lane:
    """One model's share of a run, so a slow model never holds a fast one's turn: at most
    `concurrency` of its items in flight, of which at most `slots` at the model itself. The
    rest wait here, where the wait is measured as queueing instead of being counted as the
    model's latency or busy time."""

    def __init__(self, model: BenchModel, options: RunOptions) -> None:
        self.in_flight = asyncio.Semaphore(options.concurrency)
        self.slots = asyncio.Semaphore(min(options.concurrency, model.slots))
        self.pacer = Pacer(options.requests_per_minute)


class BenchRunner:
    """Asks every model every item (× repeats) and grades the answers as they arrive.

    An answer already in the out directory's cache under the same request (see `cache`) is
    reused instead of asked, and a grade under the same grader definition likewise; anything
    else is asked again. `results.jsonl` holds this run's results as they arrive, so an
    interrupted run shows what it kept. `grade_answers=False` only collects the answers: the
    audit classifies them afterwards, as a whole run, with rules and an optional judge.
    """

    def __init__(
        self,
        models: list[BenchModel],
        items: list[TaskItem],
        options: RunOptions,
        *,
        judge: JudgeFn | None = None,
        embed: EmbedFn | None = None,
        on_result: Callable[[ItemResult], object] | None = None,
        grade_answers: bool = True,
    ) -> None:
        self.models = models
        self.items = items
        self.options = options
        self._judge = judge
        self._embed = embed
        # The model behind each grader kind that uses one: part of its grades' cache keys.
        self._helper_identity = {
            "judge": model_identity(judge),
            "similarity": model_identity(embed),
        }
        self._on_result = on_result
        self._grade_answers = grade_answers
        self._lanes = {m.alias: _Lane(m, options) for m in models}
        self._holds = Holds()

    def request(self, model: BenchModel, item: TaskItem, repeat: int) -> JSON:
        """Exactly what is sent for one item: its cache key is a hash of this."""
        return {
            "model": model.config.target,
            "messages": item.chat_messages(),
            "max_tokens": item.max_tokens or self.options.max_tokens,
            "temperature": self.options.temperature,
            "seed": self.options.seed + repeat,
        }

    async def run(self) -> list[ItemResult]:
        """This run's results, in item order (model by model within an item)."""
        out = self.options.out
        out.mkdir(parents=True, exist_ok=True)
        if self.options.fresh:
            clear_run(out)
        work = [
            (model, item, repeat)
            for repeat in range(self.options.repeat)
            for item in self.items
            for model in self.models
        ]
        answers, grades = ResponseStore(out / ANSWERS), ResponseStore(out / GRADES)
        for model in self.models:
            await model.provider.start()
        try:
            with (out / RESULTS).open("wb") as sink:

                async def one(model: BenchModel, item: TaskItem, repeat: int) -> ItemResult:
                    result = await self._answer(model, item, repeat, answers, grades)
                    sink.write(orjson.dumps(result.model_dump()) + b"\n")
                    sink.flush()
                    if self._on_result:
                        self._on_result(result)
                    return result

                results = await asyncio.gather(*(one(m, i, r) for m, i, r in work))
        finally:
            for model in self.models:
                await model.provider.close()
            answers.close()
            grades.close()
        apply_hardware_costs(self.models, results)
        return results

    async def _answer(
        self,
        model: BenchModel,
        item: TaskItem,
        repeat: int,
        answers: ResponseStore,
        grades: ResponseStore,
    ) -> ItemResult:
        body = self.request(model, item, repeat)
        key = request_key(model.config, body)
        stored = answers.get(key)
        result = ItemResult(item_id=item.id, task=item.task, model=model.alias, repeat=repeat)
        if stored is None:
            try:
                stored = await self._ask(model, body)
            except EgressDeniedError as exc:
                result.refused_by_policy = exc.message
                return result
            except GatewayError as exc:
                result.error = f"{exc.status_code} {exc.code or exc.error_type}: {exc.message}"
                return result
            answers.put(key, stored)
        else:
            result.cached = True
        response = stored["response"]
        result.latency_ms, result.queue_ms = float(stored["latency_ms"]), float(stored["queue_ms"])
        result.started_at = float(stored["started_at"])
        usage = TokenUsage.from_openai(response.get("usage")) or TokenUsage()
        result.prompt_tokens, result.completion_tokens = (
            usage.prompt_tokens,
            usage.completion_tokens,
        )
        if model.price is not None:
            result.cost_nanos = cost_nanos(usage, model.price)
        choice = (response.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        result.answer = str(message.get("content") or "")
        reasoning = message.get("reasoning_content")
        result.reasoning = str(reasoning) if reasoning else None
        result.finish_reason = choice.get("finish_reason")
        if self._grade_answers:
            await self._grade(item, result, grades)
        return result

    async def _grade(self, item: TaskItem, result: ItemResult, grades: ResponseStore) -> None:
        answer = result.answer or ""
        key = grade_key(item, answer, self._helper_identity.get(item.grader.kind))
        stored = grades.get(key)
        if stored is None:
            try:
                graded = await grade(item, answer, judge=self._judge, embed=self._embed)
            except GatewayError as exc:
                result.error = f"grading failed: {exc.message}"
                return
            stored = graded.model_dump()
            grades.put(key, stored)
        graded = Grade.model_validate(stored)
        result.score, result.detail = graded.score, graded.detail
        result.judge_cost_nanos = graded.judge_cost_nanos

    async def _ask(self, model: BenchModel, body: JSON) -> JSON:
        """Ask once a slot of the model is free, retrying what may succeed later. Latency is
        the answering attempt alone; waits for a slot, for pacing and for budget the run's own
        calls hold (see `holds`) add up as queueing.

        When every attempt fails, the first failure is raised: it is the cause (a missing key,
        say), while later ones are often its consequences (the deployment's circuit opened)."""
        lane, queued, first, attempt = self._lanes[model.alias], 0.0, None, 0
        async with lane.in_flight:
            while True:
                waiting = time.time()
                async with lane.slots:
                    await lane.pacer.wait()
                    # Wall-clock times, so spans of answers asked in different runs compare.
                    started = time.time()
                    queued += started - waiting
                    seen, held = self._holds.start(), True
                    try:
                        response = await model.provider.chat(body)
                    except GatewayError as exc:
                        failure, held = exc, not budget_refused(exc)
                    else:
                        return {
                            "response": response,
                            "latency_ms": (time.time() - started) * 1000,
                            "queue_ms": queued * 1000,
                            "started_at": started,
                        }
                    finally:
                        await self._holds.end(held=held)
                if not held:  # refused for budget, maybe only the run's own calls' reservations
                    waiting = time.time()
                    again = await self._holds.released_since(seen)
                    queued += time.time() - waiting
                    if again:
                        continue
                first = first or failure
                if not nothing_generated(failure) or attempt == self.options.retries:
                    raise first from None if first is failure else failure
                await asyncio.sleep(self.options.backoff_seconds * 2**attempt)
                attempt += 1


def nothing_generated(exc: GatewayError) -> bool:
    """Whether asking again cannot pay for a generation twice: the request was turned away
    before any upstream generated (a rate limit, a full queue, every circuit open). A timeout
    or an upstream failure is not retried here: the gateway's router has already tried the
    next deployment, and the failed one may have generated its answer to the end."""
    if isinstance(exc, UpstreamRejectedError):
        return exc.status_code == 429
    return isinstance(exc, RateLimitedError | OverloadedError)


def kept_answers(out: Path) -> int:
    """How many answers the last run into `out` kept (its `results.jsonl`), not counting
    failed calls or calls the policy refused, which a resumed run asks again."""
    path = out / RESULTS
    if not path.exists():
        return 0
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return sum(1 for row in rows if row.get("error") is None and not row.get("refused_by_policy"))


def apply_hardware_costs(models: list[BenchModel], results: list[ItemResult]) -> None:
    """Cost local models by the machine time they used: the hourly rate times the time the model
    was busy on this run's answers, shared among them by tokens (throughput measured, not
    assumed). Busy time is the union of the answers' own spans, queueing excluded, as recorded
    when each was asked: a re-run that reuses them costs exactly what the live run did."""
    for model in models:
        if model.cost_basis != "hardware" or model.hardware is None:
            continue
        own = [r for r in results if r.model == model.alias and r.started_at is not None]
        tokens = sum(r.prompt_tokens + r.completion_tokens for r in own)
        if not tokens:
            continue
        busy = _union_seconds(
            [(r.started_at, r.started_at + r.latency_ms / 1000) for r in own if r.started_at]
        )
        per_token = Decimal(str(busy)) * model.hardware.per_hour / Decimal(3600) / tokens
        for result in own:
            share = per_token * (result.prompt_tokens + result.completion_tokens)
            result.cost_nanos = int(share * Decimal(1_000_000_000))


def _union_seconds(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total
