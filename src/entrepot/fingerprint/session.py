"""One `entrepot fingerprint take` or `check`: ask the canaries through a gateway, twice, one
after the other, then store the run (and, for a check, its agreement with the newest take).

In-process, every canary is a request of the pipeline of a gateway built from the configuration,
under `--key` (or the anonymous principal `cli:fingerprint`), recorded in the ledger as
`fingerprint:chat`, never answered from the response cache, and never by a route's refusal
fallback (which would put another model's answer in the fingerprint); the usage record says
which deployment answered. By URL, the running gateway applies its own configuration and keeps
its deployment to itself. A refused or failed canary stops the run, and nothing is stored: a
fingerprint with holes compares with nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from entrepot.api.endpoints.chat import CHAT
from entrepot.bench.through_gateway import GatewayByUrl, InProcessGateway, open_gateway
from entrepot.config import Config
from entrepot.exceptions import ConfigError
from entrepot.fingerprint import canaries
from entrepot.fingerprint.compare import Agreement, Samples, compare, self_agreement
from entrepot.store import fingerprints
from entrepot.store.db import open_engine
from entrepot.store.fingerprints import FingerprintRun, StoredAnswer
from entrepot.types import JSON

COMMAND = "fingerprint"
# Each run asks every canary this many times: two samples measure the model's own noise.
SAMPLES = 2

# Called after each answer with (answers so far, answers in all).
Progress = Callable[[int, int], None]


@dataclass(slots=True)
class FingerprintRequest:
    model: str
    key_name: str | None = None
    gateway_url: str | None = None
    api_key_env: str | None = None


@dataclass(frozen=True, slots=True)
class TakeResult:
    run: FingerprintRun
    # The take's agreement with itself: (mean similarity, exact-match share) of its samples.
    noise: tuple[float, float]
    canaries: int


@dataclass(frozen=True, slots=True)
class CheckResult:
    run: FingerprintRun
    take: FingerprintRun
    agreement: Agreement


def take(
    config: Config, request: FingerprintRequest, progress: Progress | None = None
) -> TakeResult:
    """Ask the current canary set and store the answers as the model's fingerprint."""
    chosen = canaries.load()
    answers = asyncio.run(_collect(config, request, chosen, progress))
    run = _run("take", request, chosen.version, answers)
    engine = open_engine(config.store)
    try:
        fingerprints.save(engine, run, answers)
    finally:
        engine.dispose()
    return TakeResult(run, self_agreement(_samples(answers)), len(chosen.canaries))


def check(
    config: Config, request: FingerprintRequest, progress: Progress | None = None
) -> CheckResult:
    """Ask the canaries of the newest take again, compare, and store the check with its verdict."""
    engine = open_engine(config.store)
    try:
        reference = fingerprints.latest_take(engine, request.model, canaries.CURRENT)
        if reference is None:
            raise ConfigError(
                f"no fingerprint of {request.model!r} yet: run `entrepot fingerprint take"
                f" {request.model}` first"
            )
        chosen = canaries.load(reference.canary_set)
        answers = asyncio.run(_collect(config, request, chosen, progress))
        agreement = compare(_samples(fingerprints.answers(engine, reference.id)), _samples(answers))
        run = _run("check", request, chosen.version, answers, reference.id, agreement)
        fingerprints.save(engine, run, answers)
    finally:
        engine.dispose()
    return CheckResult(run, reference, agreement)


def _samples(answers: list[StoredAnswer]) -> Samples:
    by_sample: dict[int, dict[str, StoredAnswer]] = {}
    for answer in answers:
        by_sample.setdefault(answer.sample, {})[answer.canary] = answer
    return [by_sample[sample] for sample in sorted(by_sample)]


def _run(
    kind: str,
    request: FingerprintRequest,
    version: str,
    answers: list[StoredAnswer],
    reference: str | None = None,
    agreement: Agreement | None = None,
) -> FingerprintRun:
    deployments = sorted({a.deployment for a in answers if a.deployment is not None})
    found = agreement
    return FingerprintRun(
        id=f"fp_{uuid.uuid4().hex}",
        kind=kind,
        created_at=dt.datetime.now(dt.UTC),
        model_alias=request.model,
        deployment=", ".join(deployments)[:256] or None,
        canary_set=version,
        samples=SAMPLES,
        key_name=request.key_name,
        fingerprint_id=reference,
        exact_share=found.exact_share if found else None,
        similarity=found.similarity if found else None,
        floor=found.floor if found else None,
        floor_spread=found.floor_spread if found else None,
        margin=found.margin if found else None,
        substituted=found.substituted if found else None,
        reason=found.reason if found else None,
    )


async def _collect(
    config: Config,
    request: FingerprintRequest,
    chosen: canaries.CanarySet,
    progress: Progress | None,
) -> list[StoredAnswer]:
    """Every canary, `SAMPLES` times, one request at a time (a host's noise, not its load)."""
    through = open_gateway(
        config,
        COMMAND,
        [request.model],
        url=request.gateway_url,
        api_key_env=request.api_key_env,
        key_name=request.key_name,
    )
    answers: list[StoredAnswer] = []
    total = SAMPLES * len(chosen.canaries)
    async with through, _Asker(through, request.model) as ask:
        for sample in range(SAMPLES):
            for canary in chosen.canaries:
                result, deployment = await ask.call(chosen.body(canary))
                answers.append(_answer(sample, canary.id, result, deployment))
                if progress is not None:
                    progress(len(answers), total)
    return answers


class _Asker:
    """One alias of the gateway a run calls: in-process (with the deployment that answered) or
    by URL (without)."""

    def __init__(self, through: InProcessGateway | GatewayByUrl, alias: str) -> None:
        self.through = through
        self.alias = alias
        self.remote = (
            through.models([alias])[0].provider if isinstance(through, GatewayByUrl) else None
        )

    async def call(self, body: JSON) -> tuple[JSON, str | None]:
        body = {**body, "model": self.alias}
        if self.remote is not None:
            return await self.remote.chat(body), None
        through = self.through
        assert isinstance(through, InProcessGateway)
        result, exchange = await through.exchange(CHAT, body)
        return result, exchange.record.deployment

    async def __aenter__(self) -> _Asker:
        if self.remote is not None:
            await self.remote.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.remote is not None:
            await self.remote.close()


def _answer(sample: int, canary: str, result: JSON, deployment: str | None) -> StoredAnswer:
    choices = result.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    usage = result.get("usage") or {}
    return StoredAnswer(
        sample=sample,
        canary=canary,
        answer=str(message.get("content") or ""),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        deployment=deployment,
        finish_reason=choice.get("finish_reason"),
    )
