"""What upstream calls that gave the client no answer still cost, added onto the request's record.

An upstream bills what it generated whether or not the gateway used it, so every such call is
billed on the record of the request that made it:

- a refusal replaced by another deployment's answer (a route's `on_refusal: fallback`, see
  `api/refusals.py`), from its usage report or the gateway's count of what it read;
- a call cut off before its answer arrived — the request cancelled under it (a server stopping,
  an interrupted bench or audit, a shadow copy dropped at shutdown): the upstream may have
  generated, and a non-streamed upstream often goes on to the end of its answer after the
  connection is gone, but it never says how much;
- a host's content filter that threw away what its model had generated (an error saying the
  *output* was filtered, as DashScope's `data_inspection_failed` does): the output was generated,
  its length is not reported;
- a call the upstream received whole and did not answer whole (`UpstreamError.delivered`): the
  deadline fired while it generated, its answer broke off once begun, or it answered a success
  that cannot be read;
- calls that answered before one failed (`UpstreamError.spent`: an upstream that ignores `n`,
  asked again for the choices missing), from their usage reports.

A generation whose length cannot be known is billed as the gateway's count of its prompt plus
the whole output cap the upstream was sent — the most it may have generated, which the budget
reserved — flagged `usage_estimated` (`ledger.billing.cut_off_usage`). A filter that rejected the
prompt (Azure OpenAI's 400 `content_filter`, DeepSeek's "Content Exists Risk", DashScope's
"Input data may contain inappropriate content") generated nothing and reports no usage: nothing
is billed. A filter that stops the output on a 200 (`finish_reason: content_filter`, with its
usage) and a stream cut by a filter's error event are answers, billed as any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from entrepot.config import CurrencyRates
from entrepot.exceptions import CurrencyRateMissingError, GatewayError, UpstreamError
from entrepot.ledger.billing import Billable, bill, cut_off_usage, reported_usage
from entrepot.routing.refusal import host_filtered
from entrepot.types import JSON, TokenUsage, UsageRecord

T = TypeVar("T")
log = logging.getLogger("entrepot.api")
# How a host filter's error says it filtered what the model generated, not the prompt.
OUTPUT_WORDS = ("output", "completion", "generated")
INPUT_WORDS = ("input", "prompt")


def output_filtered(exc: GatewayError) -> bool:
    """Whether `exc` is a host content filter's error about the model's output, not its prompt."""
    message = exc.message.casefold()
    return (
        host_filtered(message)
        and any(word in message for word in OUTPUT_WORDS)
        and not any(word in message for word in INPUT_WORDS)
    )


class Spent:
    """One request's calls that cost without answering, each billed on a record of its own until
    `charge` adds them onto the request's `record` (`started` at the request's start)."""

    __slots__ = ("rates", "record", "records", "started")

    def __init__(self, record: UsageRecord, started: float, rates: CurrencyRates) -> None:
        self.record = record
        self.started = started
        self.rates = rates
        self.records: list[UsageRecord] = []

    async def watch(self, deployment: Billable, body: JSON, call: Awaitable[T]) -> T:
        """`call` to `deployment` with `body`, billed if it costs without answering: cut off by
        a cancellation, on the request's record as a generation of unknown length; failing
        after its model generated, kept here (reported usage as reported, the rest as a
        generation of unknown length)."""
        try:
            return await call
        except asyncio.CancelledError:
            unknown = cut_off_usage(body, deployment)
            bill(self.record, deployment, unknown, estimated=True, started=self.started)
            raise
        except GatewayError as exc:
            reported = reported_usage(exc.spent) if isinstance(exc, UpstreamError) else None
            if reported is not None:
                self._keep(deployment, reported, estimated=False)
            if output_filtered(exc) or (isinstance(exc, UpstreamError) and exc.delivered):
                self._keep(deployment, cut_off_usage(body, deployment), estimated=True)
            raise

    def _keep(self, deployment: Billable, tokens: TokenUsage, *, estimated: bool) -> None:
        scratch = UsageRecord(request_id="", endpoint="")
        bill(scratch, deployment, tokens, estimated=estimated, started=self.started)
        self.records.append(scratch)

    def charge(self) -> None:
        """Add the kept calls' tokens and cost to the request's own (settled already), once. A
        request answered by a deployment billed by machine time is billed from its start, so
        that time includes any earlier call's, which is then not billed by time again. A cost
        in a currency the rate table cannot convert into the record's is logged and left out,
        the one way a record could not carry it."""
        record = self.record
        by_time = record.cost_nanos is not None and record.price_date is None
        if self.records and not (record.usage_reported or record.usage_estimated):
            # billed from these calls alone: reported if each of them was
            record.usage_reported = all(spent.usage_reported for spent in self.records)
        for spent in self.records:
            record.prompt_tokens += spent.prompt_tokens
            record.completion_tokens += spent.completion_tokens
            record.reasoning_tokens += spent.reasoning_tokens
            record.cached_tokens += spent.cached_tokens
            record.usage_estimated = record.usage_estimated or spent.usage_estimated
            if spent.cost_nanos is None or spent.currency is None:
                continue
            if by_time and spent.price_date is None:
                continue
            if record.cost_nanos is None or record.currency is None:
                record.cost_nanos, record.currency = spent.cost_nanos, spent.currency
                record.price_date = record.price_date or spent.price_date
                continue
            try:
                added = self.rates.convert(spent.cost_nanos, spent.currency, record.currency)
            except CurrencyRateMissingError as exc:
                log.warning(
                    "request %s: a call's cost is left out: %s", record.request_id, exc.message
                )
                continue
            record.cost_nanos += added
        self.records.clear()
