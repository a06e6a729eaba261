"""A PostgreSQL server that stops answering without going away: every one of its processes is
sent SIGSTOP (the postmaster, which forks new sessions, and each session's backend), so its port
still accepts connections and its sockets stay open, but nothing replies — a hung host, a
database stuck on a full disk. SIGCONT wakes it with its sessions intact."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import psycopg
from sqlalchemy import make_url

from tests.backing import Backing


def server_processes(server: Backing) -> list[psutil.Process]:
    """The postmaster (read from its pid file: `server.process` may be the wrapper that runs it
    as the `postgres` user) and the processes it has forked."""
    assert server.owned is not None
    pid = int((server.owned / "data" / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    return [postmaster, *postmaster.children(recursive=True)]


def pause(server: Backing) -> None:
    _signal(server, signal.SIGSTOP)


def resume(server: Backing) -> None:
    _signal(server, signal.SIGCONT)
    # `runuser`, when it runs the server as the `postgres` user, stops itself when its child
    # stops, and must be woken too
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.process.pid, signal.SIGCONT)


def _signal(server: Backing, number: signal.Signals) -> None:
    for process in server_processes(server):
        with contextlib.suppress(ProcessLookupError):  # a session that just ended
            os.kill(process.pid, number)


@contextmanager
def paused(server: Backing) -> Iterator[None]:
    pause(server)
    try:
        yield
    finally:
        resume(server)


def halt(server: Backing) -> None:
    """Stop the server now, keeping its data for `restart`: a fast shutdown (SIGINT to the
    postmaster) ends the sessions a smart one (SIGTERM, what `Backing.stop` sends) waits for."""
    resume(server)
    with contextlib.suppress(ProcessLookupError):
        os.kill(server_processes(server)[0].pid, signal.SIGINT)
    server.process.wait(timeout=60)


def restart(server: Backing) -> None:
    """Start a halted server again, on the same data and port."""
    log = server.log.open("ab")
    server.process = subprocess.Popen(server.process.args, stdout=log, stderr=subprocess.STDOUT)
    port = make_url(server.url).port
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            psycopg.connect(f"postgresql://entrepot@127.0.0.1:{port}/postgres").close()
            return
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise AssertionError(f"PostgreSQL did not come back:\n{server.log.read_text()[-2000:]}")


def stop(server: Backing) -> None:
    """Stop the server for good, at once (see `halt`), and remove its data."""
    if server.process.poll() is None:
        halt(server)
    server.stop()
