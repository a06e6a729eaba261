"""The private servers the fleet tests run on: real PostgreSQL and Redis, on loopback."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text


def test_postgres_answers(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1 + 1")).scalar_one() == 2
    engine.dispose()


def test_redis_answers(redis_url: str) -> None:
    address = urlsplit(redis_url)
    assert address.hostname == "127.0.0.1" and address.port
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        sock.sendall(b"SET entrepot-test 1\r\nGET entrepot-test\r\n")
        reply = b""
        while reply.count(b"\r\n") < 3:
            reply += sock.recv(64)
    assert reply == b"+OK\r\n$1\r\n1\r\n"
