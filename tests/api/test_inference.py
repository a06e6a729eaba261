"""Request ids: the ledger's unique key, so unique; in time order, so its index grows at its end."""

from __future__ import annotations

import re

from entrepot.api.pipeline import new_request_id


def test_request_ids_are_unique_and_sort_in_the_order_they_were_made() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", i) for i in ids)
    prefixes = [i[:20] for i in ids]  # the clock part
    assert prefixes == sorted(prefixes)
