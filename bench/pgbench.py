"""pgbench with custom scripts: the SQL-only path, without Python in the loop.

Each pgbench client writes into its own existing session (created before
the run): the bare INSERT numbers its messages with a pgbench variable that
persists across the client's transactions (``-D n=0``, ``\\set n :n + 1``);
log_message numbers them itself. ``-M prepared``, one transaction per call.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import psycopg

from bench.workloads import CONTENT, MODEL, TOKENS

USER = "pgbench-user"
_CONTENT = CONTENT.replace("'", "''")
# A session uuid per (run base, client id), computed by pgbench and by us alike.
_SESSION_SQL = "('00000000-0000-4000-8000-' || lpad(:sid::text, 12, '0'))"

SCRIPTS = {
    "bare INSERT": f"""\\set sid :base + :client_id
\\set n :n + 1
insert into sessionlog.messages (user_id, session_id, position, role, content, model, tokens)
values ('{USER}', {_SESSION_SQL}::uuid, :n, 'user', '{_CONTENT}', '{MODEL}', {TOKENS});
""",
    "log_message existing": f"""\\set sid :base + :client_id
select * from public.log_message(user_id => '{USER}',
    session_id => {_SESSION_SQL}, role => 'user', content => '{_CONTENT}',
    model => '{MODEL}', tokens => {TOKENS});
""",
}


def session_id(base: int, client: int) -> str:
    return f"00000000-0000-4000-8000-{base + client:012d}"


class PgBench:
    def __init__(self, bindir: Path, socket_dir: Path, port: int, dbname: str, dsn: str) -> None:
        self.exe = str(bindir / "pgbench")
        self.conn_args = ["-h", str(socket_dir), "-p", str(port), "-U", "postgres", dbname]
        self.dsn = dsn
        self.dir = Path(tempfile.mkdtemp(prefix="sessionlog-pgbench-"))
        self.files = {}
        for name, text in SCRIPTS.items():
            path = self.dir / (re.sub(r"\W+", "_", name) + ".sql")
            path.write_text(text)
            self.files[name] = path
        self.next_base = 1

    def run(self, script: str, clients: int, *, sync: bool, seconds: int | None,
            transactions: int | None = None) -> dict[str, float]:
        """One pgbench run on fresh sessions; returns tps and failures."""
        base = self.next_base
        self.next_base += 1000
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("insert into sessionlog.users (id) values (%s) on conflict do nothing", [USER])
            with conn.cursor() as cur:
                cur.executemany("insert into sessionlog.sessions (id, user_id) values (%s, %s)",
                                [(session_id(base, c), USER) for c in range(clients)])
        env = dict(os.environ)
        if not sync:
            env["PGOPTIONS"] = "-c synchronous_commit=off"
        limit = ["-t", str(transactions)] if transactions else ["-T", str(seconds)]
        proc = subprocess.run(
            [self.exe, "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
             *limit, "-D", f"base={base}", "-D", "n=0", "-f", str(self.files[script]),
             *self.conn_args],
            capture_output=True, text=True, env=env, timeout=300, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pgbench failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", proc.stdout)
        failed = re.search(r"number of failed transactions: (\d+)", proc.stdout)
        done = re.search(r"number of transactions actually processed: (\d+)", proc.stdout)
        return {
            "tps": float(tps.group(1)) if tps else float("nan"),
            "failed": int(failed.group(1)) if failed else 0,
            "transactions": int(done.group(1)) if done else 0,
        }

    def close(self) -> None:
        for path in self.files.values():
            path.unlink(missing_ok=True)
        self.dir.rmdir()
