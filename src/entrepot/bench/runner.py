"""Running items on models: bounded concurrency, per-model pacing, retries, a persistent response
cache, and resumption — an interrupted run picks up where it stopped without asking any model
an answered item again.

Models come from the same configuration and provider layer as the gateway (in-process), or from
a running gateway by URL; either way a model is configured once and used everywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import orjson

from entrepot.bench.cache import ResponseStore
from entrepot.bench.graders import EmbedFn, JudgeFn, grade
from entrepot.bench.schema import ItemResult, TaskItem
from entrepot.config import Config, ModelConfig, Price
from entrepot.exceptions import ConfigError, GatewayError
from entrepot.ledger.pricing import cost_nanos, price_for
from entrepot.providers.base import Provider
from entrepot.providers.registry import create_provider
from entrepot.routing.router import is_retryable
from entrepot.types import JSON, TokenUsage

DEFAULT_MAX_TOKENS = 512


@dataclass(slots=True)
class BenchModel:
    alias: str
    config: ModelConfig
    provider: Provider
    price: Price | None
    hardware_cost_per_hour: Decimal | None
    busy: list[tuple[float, float]] = field(default_factory=list)

    @property
    def price_date(self) -> str | None:
        return self.price.as_of.isoformat() if self.price else None

    @property
    def currency(self) -> str:
        return self.price.currency if self.price else "USD"

    @property
    def cost_basis(self) -> str:
        if self.price is not None:
            return "tokens"
        return "hardware" if self.hardware_cost_per_hour is not None else "unpriced"


def bench_models(
    config: Config,
    aliases: list[str],
    *,
    gateway_url: str | None = None,
    api_key_env: str | None = None,
    hardware_costs: dict[str, Decimal] | None = None,
) -> list[BenchModel]:
    """The first deployment of each alias in-process, or each alias through a gateway by URL."""
    models = []
    for alias in aliases:
        configured = config.model(alias)
        if gateway_url is not None:
            deployment = ModelConfig(
                alias=alias,
                provider="openai_compatible",
                target=alias,
                base_url=gateway_url.rstrip("/") + "/v1",
                api_key_env=api_key_env,
                price=configured.price if configured else None,
            )
        elif configured is None:
            known = ", ".join(sorted({m.alias for m in config.models}))
            raise ConfigError(f"model {alias!r} is not configured (configured: {known})")
        else:
            deployment = configured
        price = price_for(configured) if configured else None
        rate = (hardware_costs or {}).get(alias)
        if rate is None and configured is not None:
            rate = configured.hardware_cost_per_hour
        models.append(BenchModel(alias, deployment, create_provider(deployment), price, rate))
    return models


@dataclass(slots=True)
class RunOptions:
    out: Path
    concurrency: int = 8
    repeat: int = 1
    requests_per_minute: float | None = None
    retries: int = 3
    backoff_seconds: float = 0.5
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = DEFAULT_MAX_TOKENS


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


class BenchRunner:
    """Asks every model every item (× repeats) and grades the answers as they arrive.

    `grade_answers=False` only collects the answers: the audit classifies them afterwards, as a
    whole run, with rules and an optional judge.
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
        self._on_result = on_result
        self._grade_answers = grade_answers
        self._results_path = options.out / "results.jsonl"
        self._store = ResponseStore(options.out / "responses.sqlite")

    def done(self) -> dict[tuple[str, str, int], ItemResult]:
        """Results already on disk from an earlier (possibly interrupted) run of this bench."""
        if not self._results_path.exists():
            return {}
        found = {}
        for line in self._results_path.read_bytes().splitlines():
            if line.strip():
                result = ItemResult.model_validate(orjson.loads(line))
                found[(result.model, result.item_id, result.repeat)] = result
        return found

    def pending(self) -> list[tuple[BenchModel, TaskItem, int]]:
        done = self.done()
        return [
            (model, item, repeat)
            for repeat in range(self.options.repeat)
            for item in self.items
            for model in self.models
            if (model.alias, item.id, repeat) not in done
        ]

    async def run(self) -> list[ItemResult]:
        self.options.out.mkdir(parents=True, exist_ok=True)
        earlier = self.done()
        for result in earlier.values():
            if self._on_result:
                self._on_result(result)
        work = self.pending()
        limit = asyncio.Semaphore(self.options.concurrency)
        pacers = {m.alias: Pacer(self.options.requests_per_minute) for m in self.models}
        for model in self.models:
            await model.provider.start()
        try:
            with self._results_path.open("ab") as sink:

                async def one(model: BenchModel, item: TaskItem, repeat: int) -> None:
                    async with limit:
                        await pacers[model.alias].wait()
                        result = await self._answer(model, item, repeat)
                    sink.write(orjson.dumps(result.model_dump()) + b"\n")
                    sink.flush()
                    if self._on_result:
                        self._on_result(result)

                await asyncio.gather(*(one(m, i, r) for m, i, r in work))
        finally:
            for model in self.models:
                await model.provider.close()
            self._store.close()
        results = list(self.done().values())
        apply_hardware_costs(self.models, results)
        return results

    async def _answer(self, model: BenchModel, item: TaskItem, repeat: int) -> ItemResult:
        body: JSON = {
            "model": model.config.target,
            "messages": item.chat_messages(),
            "max_tokens": item.max_tokens or self.options.max_tokens,
            "temperature": self.options.temperature,
            "seed": self.options.seed + repeat,
        }
        key = ResponseStore.key(model.alias, model.config.target, body)
        stored = self._store.get(key)
        result = ItemResult(item_id=item.id, task=item.task, model=model.alias, repeat=repeat)
        if stored is None:
            try:
                stored = await self._call(model, body)
            except GatewayError as exc:
                result.error = f"{exc.status_code} {exc.code or exc.error_type}: {exc.message}"
                return result
            self._store.put(key, stored)
        else:
            result.cached = True
        response, result.latency_ms = stored["response"], float(stored["latency_ms"])
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
        if not self._grade_answers:
            return result
        try:
            graded = await grade(item, result.answer, judge=self._judge, embed=self._embed)
        except GatewayError as exc:
            result.error = f"grading failed: {exc.message}"
            return result
        result.score, result.detail = graded.score, graded.detail
        result.judge_cost_nanos = graded.judge_cost_nanos
        return result

    async def _call(self, model: BenchModel, body: JSON) -> JSON:
        for attempt in range(self.options.retries + 1):
            started = time.monotonic()
            try:
                response = await model.provider.chat(body)
            except GatewayError as exc:
                if not is_retryable(exc) or attempt == self.options.retries:
                    raise
                await asyncio.sleep(self.options.backoff_seconds * 2**attempt)
                continue
            finished = time.monotonic()
            model.busy.append((started, finished))
            return {"response": response, "latency_ms": (finished - started) * 1000}
        raise AssertionError("unreachable: the last attempt returns or raises")


def apply_hardware_costs(models: list[BenchModel], results: list[ItemResult]) -> None:
    """Cost local models by the machine time they used: the hourly rate times the time the model
    was busy in this run, shared among its items by tokens (throughput measured, not assumed)."""
    for model in models:
        if model.cost_basis != "hardware" or model.hardware_cost_per_hour is None:
            continue
        own = [r for r in results if r.model == model.alias and r.error is None]
        tokens = sum(r.prompt_tokens + r.completion_tokens for r in own)
        busy = _union_seconds(model.busy) or sum(r.latency_ms for r in own) / 1000
        if not tokens:
            continue
        per_token = Decimal(str(busy)) * model.hardware_cost_per_hour / Decimal(3600) / tokens
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
