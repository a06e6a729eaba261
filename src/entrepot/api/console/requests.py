"""Requests: the ledger, newest first, filtered by key, model, status, data class and time, a
page at a time. Pages follow a keyset cursor (the last row's time and id, in the "next" link),
so every page costs what the first does on a ledger of any size.

Metadata only: who, which model and deployment, where it ran, the data class, status, tokens,
cost and latency. The ledger keeps no prompt or answer, and this page shows none.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from urllib.parse import urlencode

from starlette.responses import Response

from entrepot.api.console.pages import Page, PageContext
from entrepot.ledger.pricing import nanos_to_amount
from entrepot.store.rollups import Cursor, LedgerFilter, ledger_page

PAGE_ROWS = 50
STATUSES = {"": None, "2xx": 2, "4xx": 4, "5xx": 5}
FILTERS = ("key", "model", "status", "data_class", "from", "to")


def read_filters(
    query: Mapping[str, str], key_ids: Mapping[str, int], problems: list[str]
) -> LedgerFilter:
    """The query's filters; one that cannot be read is named, and not applied."""
    key = query.get("key") or ""
    if key and key not in key_ids:
        problems.append(f"key {key!r} is not a key of this gateway: showing every key")
    status = query.get("status") or ""
    if status not in STATUSES:
        problems.append(f"status must be 2xx, 4xx or 5xx (not {status!r}): showing every status")
        status = ""
    return LedgerFilter(
        key_id=key_ids.get(key),
        model=query.get("model") or None,
        status_class=STATUSES[status],
        data_class=query.get("data_class") or None,
        since=_moment(query, "from", problems, dt.timedelta()),
        until=_moment(query, "to", problems, dt.timedelta(days=1)),
    )


def _moment(
    query: Mapping[str, str], name: str, problems: list[str], past: dt.timedelta
) -> dt.datetime | None:
    text = (query.get(name) or "").strip()
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        problems.append(f"{name} must be a date as YYYY-MM-DD (not {text!r}): not applied")
        return None
    return dt.datetime.combine(day, dt.time(), dt.UTC) + past


async def get(ctx: PageContext) -> Response:
    query = ctx.request.query_params
    problems: list[str] = []
    keys = await asyncio.to_thread(ctx.gateway.keys.store.list, True)
    key_ids = {key.name: key.id for key in keys}
    filters = read_filters(query, key_ids, problems)
    after = Cursor.parse(query["after"]) if query.get("after") else None
    rows, cursor = await asyncio.to_thread(
        ledger_page, ctx.gateway.engine, filters, after, PAGE_ROWS
    )
    kept = {name: query[name] for name in FILTERS if query.get(name)}
    config = ctx.gateway.config
    return ctx.render(
        "requests.html",
        rows=rows,
        problems=problems,
        chosen=kept,
        keys=sorted(key_ids),
        models=sorted({m.alias for m in config.models} | set(config.routes)),
        classes=config.policy.classes,
        statuses=[s for s in STATUSES if s],
        first_url=f"{PAGE.url}?{urlencode(kept)}" if after else None,
        next_url=f"{PAGE.url}?{urlencode({**kept, 'after': cursor.token()})}" if cursor else None,
        amount=nanos_to_amount,
    )


PAGE = Page(path="/requests", title="Requests", get=get)
