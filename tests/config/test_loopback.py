"""Which hosts count as this machine, in every spelling the resolver accepts."""

from __future__ import annotations

import pytest

from entrepot.config import is_loopback


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("1270.0.0.1", False),
        ("example.com", False),
        ("127.attacker.example", False),
        ("127.0.0.1.example", False),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", False),
        ("LocalHost", True),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected
