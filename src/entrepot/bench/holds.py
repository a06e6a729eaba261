"""The budget a run's own calls hold at the gateway.

The gateway admits a call against its key's budget by reserving the call's worst case (its
prompt and its `max_tokens` at the model's price) until the answer settles the actual cost. A run
with several calls in flight can so be refused (402) by its own reservations while most of the
budget is still unspent: that refusal is not final. It is asked again once one of the run's
admitted calls has settled (its reservation released), and is final only when none of the run's
calls is left to release anything. A call that was itself refused held nothing, so refusals never
wait on each other, and a run whose budget is really spent stops asking at once.
"""

from __future__ import annotations

import asyncio

from entrepot.exceptions import BudgetExceededError, GatewayError, UpstreamRejectedError


def budget_refused(exc: GatewayError) -> bool:
    """A 402: in-process the pipeline's own error, through a gateway by URL its status."""
    if isinstance(exc, UpstreamRejectedError):
        return exc.status_code == 402
    return isinstance(exc, BudgetExceededError)


class Holds:
    """The run's calls at the gateway, and how many have settled (released their hold)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.released = 0
        self._changed = asyncio.Condition()

    def start(self) -> int:
        """A call goes out; returns the releases seen so far, for `released_since`."""
        self.in_flight += 1
        return self.released

    async def end(self, *, held: bool) -> None:
        """A call came back; `held`: it was admitted, so the gateway released its reservation."""
        self.in_flight -= 1
        self.released += held
        async with self._changed:
            self._changed.notify_all()

    async def released_since(self, seen: int) -> bool:
        """After a budget refusal (its call already ended): whether another call of the run has
        released a hold since `seen`, waiting for one while any is in flight. False means the
        refusal is final."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.released > seen or not self.in_flight)
        return self.released > seen
