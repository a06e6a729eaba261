"""Circuit breakers shared by a fleet through Redis: a failure counted on one replica counts for
all, a circuit opened by one is open on all, and the fleet sends one probe, not one per replica.

Per deployment, Redis holds a hash (consecutive failures, and when the circuit opened, on
Redis's clock so that the replicas' clocks never disagree) and a probe lease: a key naming the
replica that holds the probe, expiring after one cool-down, so a replica that dies holding the
probe blocks the others' probes for at most that long — as a probe that failed would have.

Deciding stays synchronous and costs no round trip: each breaker decides from a mirror of the
fleet's state, a plain `CircuitBreaker`, which every replica refreshes for all its deployments
in one round trip every `REFRESH_SECONDS`. Each replica writes its own transitions (a failure,
a success that clears failures or closes the circuit, a probe's end) in the background, and the
reply brings the fleet's state with it. A request on a healthy deployment writes nothing, so
the breaker adds no Redis traffic to the hot path. Only a probe waits for Redis, to take the
lease (`claim_probe`).

What the mirror allows, at most one refresh interval (plus a round trip) stale: a replica sends
requests to a deployment another replica has just seen fail or opened the circuit of (each one
that fails counts, and only prolongs the cool-down), refuses one that another replica has just
closed, or counts a failure as consecutive although a success elsewhere has just reset the count.

When Redis fails, each replica goes on with its mirror as a breaker of its own (never failing a
request for want of circuit state), and takes the fleet's state again once Redis answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from redis.asyncio import Redis

from entrepot.config import BreakerConfig
from entrepot.routing.breaker import CircuitBreaker, Outcome, Pass
from entrepot.routing.table import Deployment
from entrepot.store.redis_work import FAILURES, RedisWork

REFRESH_SECONDS = 0.2
CIRCUIT = "entrepot:circuit:"
PROBE_ELSEWHERE = "circuit half-open; a probe is already in flight on another replica"

Write = Literal["failure", "success", "started", "release"]

# Shared by every script: Redis's clock in ms, and a circuit's state as the replicas mirror it:
# failures, ms since it opened (-1: closed), and who holds the probe lease (if anyone).
_STATE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function state(circuit, lease)
  local v = redis.call('HMGET', circuit, 'failures', 'opened_at')
  local age = -1
  if v[2] then age = now_ms() - tonumber(v[2]) end
  return {tonumber(v[1] or 0), age, redis.call('GET', lease)}
end
"""

# KEYS: circuit, lease. ARGV: what happened, failure threshold, '1' for a probe, replica token.
_WRITE = (
    _STATE
    + """
local what, probe = ARGV[1], ARGV[3] == '1'
if what == 'failure' then
  local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  if probe or failures >= tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[1], 'opened_at', now_ms())
  end
elseif what == 'success' then
  redis.call('DEL', KEYS[1])
elseif what == 'started' then
  redis.call('HDEL', KEYS[1], 'opened_at')
end
if probe and redis.call('GET', KEYS[2]) == ARGV[4] then
  redis.call('DEL', KEYS[2])
end
return state(KEYS[1], KEYS[2])
"""
)

# KEYS: circuit, lease. ARGV: cool-down in ms, replica token. The verdict, then the state.
_CLAIM = (
    _STATE
    + """
local opened, verdict = redis.call('HGET', KEYS[1], 'opened_at'), 'probing'
if not opened then
  verdict = 'closed'
elseif now_ms() - tonumber(opened) < tonumber(ARGV[1]) then
  verdict = 'open'
elseif redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[1]) then
  verdict = 'probe'
elseif redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[1])
  verdict = 'probe'
end
local s = state(KEYS[1], KEYS[2])
return {verdict, s[1], s[2], s[3]}
"""
)

# KEYS: circuit and lease of each deployment in turn. The state of each.
_READ = (
    _STATE
    + """
local states = {}
for i = 1, #KEYS, 2 do
  states[#states + 1] = state(KEYS[i], KEYS[i + 1])
end
return states
"""
)

log = logging.getLogger("entrepot.routing")


class BreakerFleet:
    """The circuit state of every deployment of one replica, kept in step with the fleet's."""

    def __init__(
        self, redis: Redis, config: BreakerConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._clock = clock
        # Names this replica's probe lease; a new one per process, so a restarted replica never
        # takes a dead one's lease for its own.
        self.token = uuid.uuid4().hex
        self._token_bytes = self.token.encode()
        self._write = redis.register_script(_WRITE)
        self._claim = redis.register_script(_CLAIM)
        self._read = redis.register_script(_READ)
        self.work = RedisWork(log, "shared circuit state")
        self._breakers: list[SharedBreaker] = []
        self._task: asyncio.Task[None] | None = None

    def share(self, deployments: Iterable[Deployment]) -> None:
        """Give each deployment a breaker shared with the fleet, in place of its own."""
        for deployment in deployments:
            deployment.breaker = self.breaker(deployment.name)

    def breaker(self, name: str) -> SharedBreaker:
        breaker = SharedBreaker(self, name, self._config, self._clock)
        self._breakers.append(breaker)
        return breaker

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever(), name="circuit-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.work.drain()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self.refresh()

    async def refresh(self) -> None:
        """Mirror the fleet's state of every deployment, in one round trip."""
        breakers = self._breakers
        changes = [breaker.changes for breaker in breakers]
        try:
            states = await self._read(keys=[key for b in breakers for key in b.keys])
        except FAILURES as error:
            self.work.failed(error)
            return
        self.work.succeeded()
        for breaker, changed, state in zip(breakers, changes, states, strict=True):
            breaker.merge(state, changed)

    def held_elsewhere(self, holder: bytes | None) -> bool:
        return holder is not None and holder != self._token_bytes

    def write(self, breaker: SharedBreaker, what: Write, probe: bool) -> None:
        """Tell the fleet, in the background, what happened here."""
        breaker.changes += 1
        if self.work.available:
            self.work.spawn(self._send(breaker, what, probe, breaker.changes))

    async def _send(self, breaker: SharedBreaker, what: Write, probe: bool, changes: int) -> None:
        threshold = self._config.failure_threshold
        args = [what, threshold, "1" if probe else "0", self.token]
        breaker.merge(await self._write(keys=breaker.keys, args=args), changes)

    async def claim(self, breaker: SharedBreaker) -> list[Any]:
        """Take the probe lease if the circuit is half-open and nobody holds it."""
        cooldown_ms = max(1, int(self._config.cooldown_seconds * 1000))
        reply: list[Any] = await self._claim(keys=breaker.keys, args=[cooldown_ms, self.token])
        return reply


class SharedBreaker(CircuitBreaker):
    """One deployment's breaker: decides from its mirror of the fleet's state, tells the fleet
    of its own transitions, and asks it before probing."""

    def __init__(
        self,
        fleet: BreakerFleet,
        name: str,
        config: BreakerConfig,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(config, clock)
        self._fleet = fleet
        self.keys = [CIRCUIT + name, CIRCUIT + name + ":probe"]
        self._probe_elsewhere = False
        # Transitions made here; a state read from Redis before the latest is older than it.
        self.changes = 0

    def merge(self, state: Sequence[Any], changes: int) -> None:
        """Take the fleet's state as read from Redis, unless this replica has changed its own
        since the read was asked for: then the read is older than what this replica knows, and
        the reply to its own write, already on its way, brings the fleet's state."""
        if changes != self.changes:
            return
        age = int(state[1])
        self._failures = int(state[0])
        self._opened_at = None if age < 0 else self._clock() - age / 1000
        self._probe_elsewhere = self._fleet.held_elsewhere(state[2] if len(state) > 2 else None)

    def refusal(self) -> str | None:
        refused = super().refusal()
        if refused is None and self._opened_at is not None and self._probe_elsewhere:
            return PROBE_ELSEWHERE
        return refused

    async def claim_probe(self) -> Pass | str:
        fleet = self._fleet
        if not fleet.work.available:
            return Pass.PROBE  # Redis is failing: this replica probes on its own judgement
        changes = self.changes
        try:
            verdict, *state = await fleet.claim(self)
        except FAILURES as error:
            fleet.work.failed(error)
            return Pass.PROBE
        except BaseException:
            # Cancelled while asking (the client left): give the probe back, here and in Redis
            # if the lease was taken, or the fleet would wait a cool-down for nothing.
            self._probing = False
            fleet.write(self, "release", probe=True)
            raise
        fleet.work.succeeded()
        self.merge(state, changes)
        if verdict == b"probe":
            return Pass.PROBE
        self._probing = False
        if verdict == b"closed":
            return Pass.REGULAR
        if verdict == b"open":
            return self.refusal() or "circuit open: it failed again on another replica"
        return PROBE_ELSEWHERE

    def resolve(self, admitted: Pass, outcome: Outcome) -> None:
        was_open, had_failures = self._opened_at is not None, self._failures > 0
        super().resolve(admitted, outcome)
        probe = admitted is Pass.PROBE
        what: Write
        if outcome is Outcome.FAILURE:
            what = "failure"
        elif outcome is Outcome.SUCCESS and (probe or was_open or had_failures):
            what = "success"
        elif outcome is Outcome.STARTED and (probe or was_open):
            what = "started"
        elif probe:
            what = "release"
        else:
            return  # nothing the fleet does not know already: no Redis traffic
        self._fleet.write(self, what, probe)

    def record_success(self) -> None:
        if self._failures or self._opened_at is not None:
            super().record_success()
            self._fleet.write(self, "success", probe=False)

    def record_failure(self) -> None:
        super().record_failure()
        self._fleet.write(self, "failure", probe=False)
