"""The one path every inference request takes, whichever surface it came in by: authenticate →
validate → data class and eligible deployments (policy) → response cache → admission (limits and
budget) → pick and call a deployment with fallbacks (routing, providers) → bill (ledger) →
record. Every request leaves exactly one usage record, whichever step it stopped at.

An ingress adapter drives an `Exchange` through these steps: the OpenAI-format HTTP endpoints in
`api/endpoints/`, and `api/in_process.py` for in-process users (`entrepot bench`, `entrepot audit`),
which so obey the same policy, limits and ledger as any client of the server. A new surface (say
Anthropic's Messages API) is a new adapter that translates its body into an endpoint's format and
the answer back, not a copy of this path.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from entrepot.api import refusals
from entrepot.api.gateway import Answered, Gateway
from entrepot.api.observed import Collecting, answer_text
from entrepot.api.spent import Spent
from entrepot.api.streaming import (
    Encoder,
    OpenAIEvents,
    OpenedStream,
    open_stream,
    stream_events,
)
from entrepot.exceptions import (
    EgressDeniedError,
    GatewayError,
)
from entrepot.ledger.billing import (
    cost_of,
    estimated_tokens,
    settle_answer,
    upstream_body,
    worst_case_costs,
)
from entrepot.limits.limiter import Admission, Limiter, Subject
from entrepot.policy.eligibility import EXCLUDED, Eligibility, eligible_deployments
from entrepot.providers.weights import provenance_of
from entrepot.routing import cache
from entrepot.routing.good_enough import request_task
from entrepot.routing.table import Deployment
from entrepot.types import JSON, ApiKey, Attempt, UsageRecord

DEPLOYMENT_HEADER = "x-entrepot-deployment"
# Entrepôt's own commands name themselves, so the ledger says which calls a bench or an audit
# made, in process or through a gateway by URL; only these names, so that no client writes text
# of its own choosing into the ledger.
CLIENT_HEADER = "x-entrepot-client"
COMMANDS = frozenset({"bench", "audit", "fingerprint"})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What differs between operations: how a body is checked, which provider method answers
    it (and which streams it), and the object type a complete answer must carry."""

    name: str
    validate: Callable[[Any], JSON]
    call: str
    stream_call: str | None
    completion_object: str | None
    # Provider methods taking the request in its surface's own protocol too (see `api/surface`):
    # used instead of `call` and `stream_call` by a deployment whose provider has them.
    native_call: str | None = None
    native_stream_call: str | None = None


class Exchange:
    """One request on its way through the pipeline. The ingress calls the steps in order —
    `identify`, `prepare` (validate, classify, cache, admit), then `answer` or `stream` — and
    `finish` once at the end; each step fills in the usage record as it goes, so a request that
    stops early is recorded with what was known by then."""

    __slots__ = (
        "admission",
        "attempts",
        "body",
        "class_header",
        "content",
        "eligible",
        "endpoint",
        "fall_back_on_refusal",
        "fingerprint",
        "gateway",
        "headers",
        "key",
        "limiter",
        "native",
        "record",
        "refusal_guard",
        "spent",
        "started",
        "subjects",
        "ttl",
    )

    def __init__(self, gateway: Gateway, endpoint: Endpoint, record_as: str | None = None) -> None:
        """`record_as` names the request's origin in the ledger's endpoint column (say
        "bench:chat") when one of Entrepôt's own commands made it (see `recorded_endpoint`)."""
        self.gateway = gateway
        self.endpoint = endpoint
        self.record = UsageRecord(request_id=new_request_id(), endpoint=record_as or endpoint.name)
        self.started = time.perf_counter()
        self.headers = {"x-request-id": self.record.request_id}
        self.attempts: list[Attempt] = []
        self.admission: Admission | None = None
        self.key: ApiKey | None = None
        self.body: JSON = {}
        self.native: JSON | None = None
        self.eligible: Eligibility | None = None
        self.fingerprint = ""
        self.ttl: float | None = None
        self.refusal_guard: refusals.RefusalGuard | None = None
        # Upstream calls that cost without answering: billed onto the record all the same.
        self.spent = Spent(self.record, self.started, gateway.config.currency_rates)
        # A route's `on_refusal: fallback` applies (an audit turns it off: see `in_process.call`).
        self.fall_back_on_refusal = True
        self.class_header: str | None = None
        # The answer's text, kept only for the gateway's observer (see `_observed`).
        self.content: str | None = None
        # Who the request is charged to, and by which limiter: its key and team unless a
        # caller says otherwise (a shadow copy is charged to its route's shadow line).
        self.subjects: Sequence[Subject] | None = None
        self.limiter: Limiter = gateway.limiter

    def identify(self, key: ApiKey | None) -> None:
        """Who is calling (None: an anonymous caller where keys are not required)."""
        self.key = key
        if key is not None:
            record = self.record
            record.key_id, record.key_name, record.team = key.id, key.name, key.team

    async def prepare(
        self,
        parsed: object,
        size: int,
        class_header: str | None,
        cache_header: str | None,
        native: JSON | None = None,
        *,
        task_header: str | None = None,
    ) -> bytes | None:
        """Everything before an upstream is called: check the body, settle its data class and
        where it may go, look in the response cache (a hit is returned, and the request is
        done), then admit it against its key's and team's limits. `size` is the body's length
        in bytes, which bounds its prompt tokens; `native` is the request in its surface's own
        protocol, when that is not the internal one; `task_header` the task it names (else its
        key's default task), which a good_enough route chooses its model by."""
        gateway, record, key = self.gateway, self.record, self.key
        body = self.body = self.endpoint.validate(parsed)
        self.native = native
        self.class_header = class_header
        requested: str = body["model"]
        alias = gateway.routing.alias_for(requested)
        record.model_alias = _printable(alias)
        if alias is not requested:
            record.requested_model = _printable(requested)
        task = record.task = request_task(task_header, key)
        eligible = self.eligible = eligible_deployments(
            table=gateway.routing,
            detector=gateway.detector,
            egress=gateway.egress,
            key=key,
            alias=alias,
            body=body,
            class_header=class_header,
            offline=gateway.offline,
            reroute_alias=gateway.config.policy.reroute_alias,
            task=task,
        )
        if eligible.decision is not None:
            record.evidence_id = eligible.decision.evidence_id
        self.attempts += eligible.skipped
        record.data_class, record.findings = eligible.data_class, eligible.findings or None
        streaming = record.stream = bool(self.endpoint.stream_call and body.get("stream"))

        if not streaming:
            self.ttl = gateway.cache.ttl_for(cache_header, key.cache_ttl_seconds if key else None)
        if self.ttl is not None:
            # Per key, and per task: a good_enough route may answer each task by another model.
            caller = f"key:{key.id}" if key else "anonymous"
            scope = caller if task is None else f"{caller} task:{task}"
            self.fingerprint = cache.ResponseCache.fingerprint(scope, self.endpoint.name, body)
            hit = await gateway.cache.get(self.fingerprint)
            self.headers[cache.HEADER] = "hit" if hit is not None else "miss"
            if hit is not None:
                record.cache_hit = True
                return hit

        deployments, route = eligible.deployments, gateway.config.route(eligible.alias)
        # Every attempt may be billed (a timed-out or refused generation is), each deployment
        # tried at most once.
        attempts = min(route.max_attempts, len(deployments))
        worst = worst_case_costs(size, body, deployments, attempts)
        if route.on_refusal == "fallback" and self.fall_back_on_refusal:  # else: no cost
            self.refusal_guard = refusals.guard(
                record, route, eligible, body, gateway.config, self.spent
            )
        subjects = gateway.subjects(key) if self.subjects is None else self.subjects
        admission = self.admission = await self.limiter.admit(
            subjects,
            estimated_tokens=estimated_tokens(size, body, deployments),
            worst_costs=worst,
            request_id=record.request_id,
        )
        record.limits_degraded = admission.degraded
        self.headers.update(admission.headers)
        return None

    def _note(self, deployment: Deployment) -> None:
        record = self.record
        record.deployment = deployment.name
        record.provider = deployment.config.provider
        record.jurisdiction = deployment.config.jurisdiction
        self.headers[DEPLOYMENT_HEADER] = deployment.name
        provenance = provenance_of(deployment.provider)
        record.weights_sha256 = provenance.weights_sha256
        record.adapter_sha256 = provenance.adapter_sha256
        provenance.label(self.headers)

    async def answer(self) -> JSON:
        """Route and call for a complete answer, under the client's alias, billed."""
        assert self.eligible is not None
        body, native = self.body, self.native
        method, native_method = self.endpoint.call, self.endpoint.native_call

        async def ask(deployment: Deployment) -> JSON:
            self._note(deployment)
            upstream = upstream_body(body, deployment)
            provider = deployment.provider
            result: JSON
            if native is not None and native_method and hasattr(provider, native_method):
                call = getattr(provider, native_method)(upstream, native)
            else:
                call = getattr(provider, method)(upstream)
            result = await self.spent.watch(deployment, upstream, call)
            return result

        router, guard = self.gateway.router, self.refusal_guard
        alias, deployments = self.eligible.alias, self.eligible.deployments
        try:
            if guard is None:
                result, deployment = await router.call(alias, deployments, ask, self.attempts)
                router.finished(deployment)
            else:
                result, deployment = await guard.route_answer(
                    router, alias, deployments, ask, self.attempts
                )
        except BaseException:
            await self._unanswered()
            raise
        self._note(deployment)
        normalise(result, body["model"], self.endpoint)
        settle_answer(self.record, deployment, body, result, self.started)
        self.spent.charge()
        if self._observed():
            self.content = answer_text(result)
        return result

    def remember(self, payload: bytes) -> None:
        """Keep a complete answer in the response cache, if this request may be cached."""
        if self.ttl is not None:
            self.gateway.cache.put(self.fingerprint, payload, self.ttl)

    async def stream(self, encoder: Encoder | None = None) -> AsyncGenerator[bytes, None]:
        """Route until a deployment's stream has started, then relay it as server-sent events,
        written by `encoder` (OpenAI's format by default). From here the stream owns the
        request's end: it calls `finish` when it is over."""
        assert self.eligible is not None and self.endpoint.stream_call is not None
        body, native, native_method = self.body, self.native, self.endpoint.native_stream_call
        options = body.get("stream_options") or {}
        if encoder is None:
            encoder = OpenAIEvents(body["model"], bool(options.get("include_usage")))
        if self._observed():
            encoder = Collecting(encoder, self._keep)

        async def start(deployment: Deployment) -> OpenedStream:
            self._note(deployment)
            upstream = {
                **upstream_body(body, deployment),
                "stream_options": {**options, "include_usage": True},
            }
            if native is not None and native_method and hasattr(deployment.provider, native_method):
                opening = open_stream(deployment, native_method, upstream, native)
            else:
                opening = open_stream(deployment, self.endpoint.stream_call or "", upstream)
            return await self.spent.watch(deployment, upstream, opening)

        router, guard = self.gateway.router, self.refusal_guard
        alias, deployments = self.eligible.alias, self.eligible.deployments
        try:
            if guard is None:
                opened, deployment = await router.call(
                    alias, deployments, start, self.attempts, streaming=True
                )
            else:
                opened, deployment = await guard.route_stream(
                    router, alias, deployments, start, self.attempts
                )
        except BaseException:
            await self._unanswered()
            raise
        self._note(deployment)

        async def end_stream() -> None:
            self.spent.charge()
            router.finished(deployment)
            await self.finish()

        return stream_events(deployment, opened, self.record, self.started, encoder, end_stream)

    async def _unanswered(self) -> None:
        """Routing failed or was cancelled: what its calls generated is billed all the same."""
        if self.refusal_guard is not None:
            await self.refusal_guard.drop()
        self.spent.charge()

    def _observed(self) -> bool:
        """Whether the gateway's observer wants this request's answer once it is over."""
        observer, eligible = self.gateway.observer, self.eligible
        return (
            observer is not None
            and eligible is not None
            and observer.wants(eligible.alias, self.record.endpoint)
        )

    def _keep(self, content: str) -> None:
        self.content = content

    def failed(self, exc: GatewayError) -> None:
        record = self.record
        record.status = exc.status_code
        record.error_type = exc.code or exc.error_type
        if isinstance(exc, EgressDeniedError):
            record.data_class, record.findings = exc.data_class, exc.findings
            self.attempts += [Attempt(name, EXCLUDED, why) for name, why in exc.excluded]

    async def finish(self) -> None:
        """Release what the request held and write its record; runs exactly once per request."""
        record = self.record
        record.attempts = [a.as_json() for a in self.attempts] or None
        if self.admission is not None:
            tokens = record.prompt_tokens + record.completion_tokens
            await self.limiter.settle(
                self.admission, actual_tokens=tokens, actual_cost=cost_of(record)
            )
        record.latency_ms = int((time.perf_counter() - self.started) * 1000)
        self.gateway.ledger.record(record)
        observer, content, eligible = self.gateway.observer, self.content, self.eligible
        if observer is None or content is None or eligible is None:
            return
        if record.status == 200 and record.error_type is None:
            answered = Answered(
                record, eligible.alias, self.body, self.key, self.class_header, content
            )
            observer.answered(answered)


def recorded_endpoint(command: str | None, endpoint: Endpoint) -> str | None:
    """The ledger's endpoint for a call made by one of Entrepôt's commands ("bench:chat"); None
    (the plain endpoint) for any other caller or an unknown name."""
    return f"{command}:{endpoint.name}" if command in COMMANDS else None


def new_request_id() -> str:
    """Unique and in time order: the clock in nanoseconds, then 64 random bits. The ledger's
    unique index on request ids then grows at its end; random ids made each insert a random
    B-tree descent, which cost twice as much per row and grew with the table. An id is a label,
    not a secret, so the bits come from `random` (seeded from the OS, reseeded after a fork)
    rather than a system call per request."""
    return f"req_{time.time_ns():016x}{random.getrandbits(64):016x}"


def _printable(name: str) -> str:
    """A model name as the ledger keeps it: a NUL would make PostgreSQL refuse the whole ledger
    batch, again at every retry."""
    return name[:256].replace("\x00", "\N{REPLACEMENT CHARACTER}")


def normalise(result: JSON, alias: str, endpoint: Endpoint) -> None:
    """Fill what OpenAI's schema requires but some upstreams omit, and answer under the alias."""
    result["model"] = alias
    if endpoint.completion_object is None:
        return
    result.setdefault("object", endpoint.completion_object)
    result.setdefault("created", int(time.time()))
    for choice in result.get("choices") or ():
        choice.setdefault("logprobs", None)
        message = choice.get("message")
        if isinstance(message, dict):
            message.setdefault("content", None)
            message.setdefault("refusal", None)
