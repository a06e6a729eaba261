"""Stopping and restarting a Redis of a test's own (from `tests.backing.start_redis`) on the
same port, so that clients configured with its URL find it again."""

from __future__ import annotations

import subprocess
import time

import redis

from tests.backing import Backing

START_SECONDS = 30


def restart(server: Backing) -> None:
    """Stop it if it runs, and start it again on the same port, empty (no persistence)."""
    server.stop()
    server.process = subprocess.Popen(
        server.process.args, stdout=server.log.open("ab"), stderr=subprocess.STDOUT
    )
    client = redis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + START_SECONDS
    try:
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()
