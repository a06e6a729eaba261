"""`entrepot models` without a subcommand: the configured models, with where each runs, its
licence, the digest and quantisation of its weights, and what it costs."""

from __future__ import annotations

from entrepot.cli.common import TABLE, ConfigOption, FormatOption, console, load, output_format
from entrepot.ledger.display import money
from entrepot.ledger.hardware import hourly_rate
from entrepot.ledger.pricing import price_for
from entrepot.listing import Column, Listing, show
from entrepot.providers.provenance import listing_row


def models(config_path: ConfigOption = None, fmt: FormatOption = TABLE) -> None:
    """Show the configured models."""
    config = load(config_path)
    listing = Listing(
        [
            Column("alias", lambda r: r["alias"]),
            Column("provider", lambda r: r["provider"]),
            Column("target", lambda r: r["target"]),
            Column("jurisdiction", lambda r: r["jurisdiction"]),
            Column("licence", lambda r: r["licence"] or ""),
            Column("sha256", lambda r: r["sha256_shown"]),
            Column("quant", lambda r: r["quantisation"] or ""),
            Column("price (1M in·out, or hour)", lambda r: r["price_text"]),
        ]
    )
    for model in config.models:
        price = price_for(model)
        if price is not None:
            pair = [
                money(float(p), price.currency) for p in (price.input_per_1m, price.output_per_1m)
            ]
            shown = f"{'·'.join(pair)} ({price.as_of})"
        elif (rate := hourly_rate(model)) is not None:
            shown = rate.describe()
        else:
            shown = "unpriced"
        listing.add(
            {
                "alias": model.alias,
                "provider": model.provider,
                "target": model.target,
                "jurisdiction": model.jurisdiction,
                "licence": model.licence,
                "input_per_1m": price.input_per_1m if price else None,
                "output_per_1m": price.output_per_1m if price else None,
                "currency": price.currency if price else None,
                "price_as_of": price.as_of if price else None,
                "price_text": shown,
                **listing_row(model),
            }
        )
    show(listing, console, output_format(fmt))
