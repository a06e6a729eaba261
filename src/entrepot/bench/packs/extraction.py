"""The `extraction` pack: pull structured fields out of invoices written as free text.

Each invoice is rendered in one of several layouts (labelled fields, a table, a letter, a
terse receipt) with dates and currencies written in different ways, so a model must understand
the document rather than find one fixed label. The stated total always equals the sum of the
line items, and the expected answer normalises the date to ISO and the currency to its code.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from entrepot.bench.schema import GraderSpec, TaskItem

DESCRIPTION = "Extract invoice number, date, currency, total and email from free-text invoices"

VENDORS = (
    "Harbour Lane Supplies",
    "Northwind Office Goods",
    "Blue Fern Catering",
    "Kestrel Print Works",
    "Oakridge Hardware",
    "Silverline Cleaning Co",
    "Meadow & Finch Florists",
    "Quayside IT Services",
)
PRODUCTS = (
    "A4 paper (box)",
    "Toner cartridge",
    "Desk lamp",
    "Cleaning visit",
    "Sandwich platter",
    "Network cable 5m",
    "Flower arrangement",
    "Hourly support",
    "Safety gloves (pair)",
    "Whiteboard markers",
)
CUSTOMERS = ("j.moreau", "accounts", "p.okafor", "finance.team", "lena.berg", "ops", "d.silva")
DOMAINS = ("example.com", "example.org", "acme-retail.test", "brightpath.test")
# Code -> symbol, when the symbol names the currency unambiguously.
CURRENCIES = {"EUR": "€", "GBP": "£", "USD": None, "CAD": None, "CHF": None, "AUD": None}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
FIELDS = ["invoice_number", "date", "currency", "total", "customer_email"]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["vendor", *FIELDS],
    "properties": {
        "vendor": {"type": "string"},
        "invoice_number": {"type": "string"},
        "date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "total": {"type": "number"},
        "customer_email": {"type": "string"},
    },
}
INSTRUCTION = (
    "Extract the following from the invoice below and reply with a JSON object only, with the "
    'keys "vendor", "invoice_number", "date" (as YYYY-MM-DD), "currency" (the ISO 4217 code, '
    'e.g. "EUR"), "total" (the amount due, as a number) and "customer_email".\n\n'
)


class Invoice:
    """One invoice's facts, from which every layout renders the same content."""

    def __init__(self, rng: random.Random) -> None:
        self.vendor = rng.choice(VENDORS)
        self.date = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 2400))
        self.number = rng.choice(("INV-{y}-{n:05d}", "{y}/{n:05d}", "A{n:06d}", "SO-{n}")).format(
            y=self.date.year, n=rng.randint(1, 99999)
        )
        self.currency = rng.choice(list(CURRENCIES))
        self.email = f"{rng.choice(CUSTOMERS)}@{rng.choice(DOMAINS)}"
        self.lines = [
            (product, rng.randint(1, 12), Decimal(rng.randrange(150, 25000, 5)) / 100)
            for product in rng.sample(PRODUCTS, rng.randint(1, 4))
        ]
        self.total = sum((quantity * price for _, quantity, price in self.lines), Decimal(0))
        self.use_symbol = CURRENCIES[self.currency] is not None and rng.random() < 0.5

    def amount(self, value: Decimal) -> str:
        symbol = CURRENCIES[self.currency]
        return f"{symbol}{value:.2f}" if self.use_symbol else f"{self.currency} {value:.2f}"

    def written_date(self, rng: random.Random) -> str:
        day = self.date
        return rng.choice(
            (day.isoformat(), f"{day.day} {MONTHS[day.month - 1]} {day.year}", f"{day:%Y.%m.%d}")
        )

    def expected(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "invoice_number": self.number,
            "date": self.date.isoformat(),
            "currency": self.currency,
            "total": float(self.total),
            "customer_email": self.email,
        }


def _labelled(inv: Invoice, rng: random.Random) -> str:
    lines = [f"  {q} x {name} @ {inv.amount(price)}" for name, q, price in inv.lines]
    return "\n".join(
        [
            inv.vendor.upper(),
            f"Invoice No: {inv.number}",
            f"Issued: {inv.written_date(rng)}",
            f"Bill to: {inv.email}",
            "Items:",
            *lines,
            f"Amount due: {inv.amount(inv.total)}",
        ]
    )


def _table(inv: Invoice, rng: random.Random) -> str:
    rows = [
        f"| {name} | {q} | {inv.amount(price)} | {inv.amount(q * price)} |"
        for name, q, price in inv.lines
    ]
    return "\n".join(
        [
            f"{inv.vendor} -- INVOICE {inv.number} -- {inv.written_date(rng)}",
            f"Customer contact: {inv.email}",
            "| Description | Qty | Unit price | Line total |",
            "|---|---|---|---|",
            *rows,
            f"TOTAL: {inv.amount(inv.total)}",
        ]
    )


def _letter(inv: Invoice, rng: random.Random) -> str:
    lines = [f"{q} x {name} at {inv.amount(price)} each" for name, q, price in inv.lines]
    return (
        f"Dear customer ({inv.email}),\n\nThank you for your order. This is invoice "
        f"{inv.number}, dated {inv.written_date(rng)}, covering: {'; '.join(lines)}. "
        f"The amount due is {inv.amount(inv.total)}, payable within 30 days.\n\n"
        f"Kind regards,\n{inv.vendor}"
    )


def _receipt(inv: Invoice, rng: random.Random) -> str:
    lines = [f"{name} {q} x {inv.amount(price)}" for name, q, price in inv.lines]
    return "\n".join(
        [
            f"*** {inv.vendor} ***",
            f"{inv.written_date(rng)}   ref {inv.number}",
            *lines,
            f"TOTAL {inv.amount(inv.total)}",
            f"e-receipt sent to {inv.email}",
        ]
    )


LAYOUTS: dict[str, Callable[[Invoice, random.Random], str]] = {
    "labelled": _labelled,
    "table": _table,
    "letter": _letter,
    "receipt": _receipt,
}


def generate(rng: random.Random, size: int) -> list[TaskItem]:
    """Layouts rotate so every prefix of the pack is balanced between them."""
    kinds = list(LAYOUTS)
    grader = GraderSpec(kind="json", schema_=SCHEMA, fields=FIELDS)
    items = []
    for n in range(size):
        kind = kinds[n % len(kinds)]
        invoice = Invoice(rng)
        document = LAYOUTS[kind](invoice, rng)
        items.append(
            TaskItem(
                id=f"extraction-{n}",
                task="extraction",
                messages=[{"role": "user", "content": INSTRUCTION + document}],
                expected=invoice.expected(),
                grader=grader,
                tags=["extraction", kind],
            )
        )
    return items
