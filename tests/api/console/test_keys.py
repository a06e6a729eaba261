"""The Keys and budgets and the Models pages, over HTTP: a key made in the console works, its
spend and what is left are the ledger's, and once revoked there it is refused."""

from __future__ import annotations

import datetime as dt
import html
import re
import sqlite3
from decimal import Decimal

import httpx
import openai
import pytest

from entrepot.api.console import figures
from entrepot.config import ModelConfig
from entrepot.ledger import hardware
from tests.api.console.conftest import hidden
from tests.conftest import Server, usage_record

BUDGET = Decimal("0.1")  # above one request's worst case (its output cap at $8/1M)


def cells(page: str, first: str) -> dict[str, str]:
    """The cells of the table row whose first cell is `first`, by their column's label."""
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        found = dict(re.findall(r'<td[^>]*data-label="([^"]+)"[^>]*>(.*?)</td>', row, re.S))
        name = next(iter(found.values()), "").split("<br>")[0]  # a key's prefix is below
        if found and html.unescape(re.sub(r"<[^>]+>", "", name)) == first:
            return {k: html.unescape(re.sub(r"<[^>]+>", " ", v)).strip() for k, v in found.items()}
    raise AssertionError(f"no row for {first!r}")


def spent_by(gateway: Server, key_name: str) -> Decimal:
    assert gateway.data_dir is not None
    with sqlite3.connect(gateway.data_dir / "entrepot.db") as db:
        (nanos,) = db.execute(
            "SELECT COALESCE(SUM(u.cost_nanos), 0) FROM usage_records u"
            " JOIN api_keys k ON k.id = u.key_id WHERE k.name = ?",
            (key_name,),
        ).fetchone()
    return Decimal(nanos) / Decimal(10**9)


def create(session: httpx.Client, **fields: str) -> str:
    token = hidden(session.get("/ui/keys").text, "csrf_token")
    page = session.post("/ui/keys", data={"action": "create", "csrf_token": token, **fields})
    assert page.status_code == 201, page.text
    secret = re.search(r'id="new-secret">([^<]+)<', page.text)
    assert secret
    return secret.group(1)


def test_a_key_made_here_is_billed_shown_and_revoked(
    console_gateway: Server, session: httpx.Client
) -> None:
    fields = {"name": "budgeted", "team": "research", "budget_amount": str(BUDGET)}
    secret = create(session, **fields, models="fake/echo", requests_per_minute="100")
    client = openai.OpenAI(base_url=console_gateway.url + "/v1", api_key=secret, max_retries=0)
    for word in ("one", "two", "three"):
        answer = client.chat.completions.with_raw_response.create(
            model="fake/echo",
            messages=[{"role": "user", "content": f"count {word}"}],
            max_tokens=50,
        )
        usage_record(console_gateway, answer.headers["x-request-id"])  # written to the store
    with pytest.raises(openai.PermissionDeniedError):  # not among its models
        client.chat.completions.create(model="fake/cn", messages=[{"role": "user", "content": "x"}])

    page = session.get("/ui/keys").text
    assert secret not in page  # shown once, at creation only
    spent = spent_by(console_gateway, "budgeted")
    assert spent > 0
    row = cells(page, "budgeted")
    assert row["Models"] == "fake/echo" and row["Team"] == "research"
    assert row["Rate limits"] == "100 req/min"
    assert row["Spent (month)"] == figures.money(spent, "USD")
    assert row["Remaining"].startswith(figures.money(BUDGET - spent, "USD"))
    per_day = spent * 24  # spent within the first hour: the rate over an hour
    assert row["Burn rate"] == f"{figures.money(per_day, 'USD')}/day"
    now = dt.datetime.now(dt.UTC)
    runs_out = now + dt.timedelta(days=float((BUDGET - spent) / per_day))
    period_end = (now.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    if runs_out < period_end:
        assert row["Runs out"][:10] == runs_out.date().isoformat()
    else:
        assert row["Runs out"] == f"not before {period_end:%Y-%m-01 00:00} (period ends)"
    team = cells(page, "research")
    assert team["Spent (month)"] == figures.money(spent, "USD")
    assert team["Budget"] == "$50.00 / month"

    token = hidden(page, "csrf_token")
    key_id = re.search(r'name="key_id" value="(\d+)"', page[page.index(">budgeted<") :])
    assert key_id
    revoked = session.post(
        "/ui/keys", data={"action": "revoke", "key_id": key_id.group(1), "csrf_token": token}
    )
    assert revoked.status_code == 303
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="fake/echo", messages=[{"role": "user", "content": "x"}]
        )
    assert cells(session.get("/ui/keys").text, "budgeted")["Revoked"]


def test_a_bad_form_says_what_to_fix(session: httpx.Client) -> None:
    token = hidden(session.get("/ui/keys").text, "csrf_token")
    base = {"action": "create", "csrf_token": token}
    for fields, message in (
        ({"name": "b1", "budget_amount": "ten"}, "budget_amount must be a number"),
        ({"name": "b2", "requests_per_minute": "1.5"}, "requests_per_minute must be a whole"),
        ({"name": "b3", "models": "no/such"}, "Allowed models: 'no/such' not configured; known"),
        ({"name": "b4", "data_class": "secret"}, "data_class must be one of"),
        ({"name": ""}, "key name must be"),
    ):
        page = session.post("/ui/keys", data={**base, **fields})
        assert page.status_code == 400, fields
        assert message in html.unescape(page.text)
        assert 'id="new-secret"' not in page.text


def test_models_page(console_gateway: Server, session: httpx.Client) -> None:
    page = session.get("/ui/models").text
    echo = cells(page, "fake/echo")
    assert echo["Provider"] == "openai_compatible"
    assert echo["Licence"] == "MIT"
    assert echo["Price per 1M tokens"].split() == ["$2.00", "/", "$8.00", "2026-11-01"]
    assert echo["Circuit"].split() == ["closed", "0", "in", "flight"]
    assert echo["Requests"].split()[1:] == ["0", "failed", "(0%)"]
    assert cells(page, "fake/cn")["Jurisdiction"].startswith("CN")
    local = cells(page, "local/echo")
    cpu = hardware.reference().cpu
    per_hour = figures.money(cpu.per_hour * hardware.cores_used(_local_echo()), "USD")
    assert local["Hardware"].split()[0] == f"{per_hour}/hour"
    assert local["Hardware"].endswith(f"{cpu.source}, {cpu.as_of.isoformat()}")
    assert local["Price per 1M tokens"] == "–"


def _local_echo() -> ModelConfig:
    return ModelConfig(
        alias="local/echo", provider="openai_compatible", target="m", base_url="http://127.0.0.1"
    )
