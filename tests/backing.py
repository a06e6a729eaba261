"""Private PostgreSQL and Redis servers for the tests that claim fleet behaviour: real servers,
never mocks. The binaries come from Debian's packages, installed when missing; each server runs
from a temporary directory on a free loopback port, as the user running the tests (PostgreSQL
refuses to run as root, so there it runs as the `postgres` user the package creates), and is
stopped at the end of the session. The system's own services are never touched.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.conftest import free_port, stop_process

START_SECONDS = 30


@dataclass
class Backing:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    owned: Path | None = None  # a directory to remove once stopped

    def stop(self) -> None:
        stop_process(self.process)
        if self.owned is not None:
            shutil.rmtree(self.owned, ignore_errors=True)


def install(package: str) -> None:
    """`apt-get install` one of Debian's packages (as root, else through sudo)."""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = [*sudo, "apt-get", "install", "-y", "--no-install-recommends", package]
    if subprocess.run(command, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(command, env=env, capture_output=True, check=True)


def _postgres_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_postgres_user(tmp: Path) -> list[str]:
    """The command prefix that runs PostgreSQL's programs: as the `postgres` user when root."""
    if os.geteuid() != 0:
        return []
    shutil.chown(tmp, "postgres", "postgres")
    return ["runuser", "-u", "postgres", "--"]


def start_postgres() -> Backing:
    """In a directory of its own under the system's temporary directory: the `postgres` user
    must be able to reach it, which pytest's private temporary directories do not allow."""
    if _postgres_bin("initdb") is None:
        install("postgresql")
    initdb, postgres = _postgres_bin("initdb"), _postgres_bin("postgres")
    assert initdb and postgres, "PostgreSQL's initdb and postgres are not installed"
    tmp = Path(tempfile.mkdtemp(prefix="entrepot-postgres-"))
    prefix = _as_postgres_user(tmp)
    data = tmp / "data"
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "entrepot", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    log = tmp / "postgres.log"
    process = subprocess.Popen(
        [
            *prefix,
            postgres,
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={tmp}",
            "-c",
            "fsync=off",  # a throwaway cluster: durability is the real servers' business
            "-c",
            "max_connections=200",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"postgresql+psycopg://entrepot@127.0.0.1:{port}/postgres"
    _wait(lambda: _postgres_ready(port), process, log)
    return Backing(url, process, log, tmp)


def _postgres_ready(port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(f"postgresql://entrepot@127.0.0.1:{port}/postgres", connect_timeout=1):
            return True
    except psycopg.OperationalError:
        return False


def start_redis(tmp: Path) -> Backing:
    if shutil.which("redis-server") is None:
        install("redis-server")
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed"
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = tmp / "redis.log"
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    _wait(lambda: _redis_ready(port), process, log)
    return Backing(f"redis://127.0.0.1:{port}/0", process, log)


def _redis_ready(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()[-2000:]}")
        if ready():
            return
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server not ready within {START_SECONDS}s:\n{log.read_text()[-2000:]}")


def new_database(server_url: str) -> str:
    """The URL of a new, empty database on the PostgreSQL server at `server_url`."""
    name = f"test_{uuid.uuid4().hex}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"
