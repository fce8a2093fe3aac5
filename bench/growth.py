"""Fill a database with many messages, fast, for the cost-versus-size cases.

The rows are made server-side with INSERT ... SELECT over generate_series,
in chunks of a million, with ``session_replication_role = replica`` (the
foreign-key triggers stay off during the load: the parents are inserted
first, so the rows are valid all the same) and ``synchronous_commit = off``.
The shape is that of a chat log: users with 10 sessions each, 20 messages
per session, messages arriving interleaved across sessions (so the primary
key index is filled in random order, as in production), plus one long
session for get_messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from bench.workloads import CONTENT, MODEL, TOKENS

PER_SESSION = 20
SESSIONS_PER_USER = 10
CHUNK = 1_000_000
LONG_USER = "load-user-long"
LONG_SESSION = "4c0a9d3e-0000-4000-8000-00000000106e"


def load(dsn: str, messages: int, long_session: int,
         progress: Callable[[str], None] = lambda _: None) -> float:
    """Load about ``messages`` messages (``long_session`` of them in one
    session); returns the seconds it took."""
    start = time.perf_counter()
    regular = max(messages - long_session, PER_SESSION)
    sessions = max(regular // PER_SESSION, 1)
    regular = sessions * PER_SESSION
    users = max(sessions // SESSIONS_PER_USER, 1)
    # mod() rather than %: psycopg reads % in a query with parameters.
    user_of = "'load-user-' || md5((1 + mod({s}, {users}))::text)"
    session_of = "md5('session-' || ({s}))::uuid"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("set synchronous_commit = off")
        conn.execute("set session_replication_role = replica")
        conn.execute("set maintenance_work_mem = '256MB'")
        conn.execute(f"insert into sessionlog.users (id) "
                     f"select 'load-user-' || md5(u::text) from generate_series(1, {users}) u")
        conn.execute(
            f"insert into sessionlog.sessions (id, user_id, message_count) "
            f"select {session_of.format(s='s')}, {user_of.format(s='s', users=users)}, {PER_SESSION} "
            f"from generate_series(0, {sessions - 1}) s")
        for low in range(0, regular, CHUNK):
            high = min(low + CHUNK, regular)
            # Message i goes to session mod(i, sessions): sessions grow side by side.
            conn.execute(
                f"insert into sessionlog.messages "
                f"(user_id, session_id, position, role, content, model, tokens) "
                f"select {user_of.format(s=f'mod(i, {sessions})', users=users)}, "
                f"{session_of.format(s=f'mod(i, {sessions})')}, i / {sessions} + 1, "
                f"case when mod(i, 2) = 0 then 'user' else 'assistant' end, %s, %s, %s "
                f"from generate_series({low}, {high - 1}) i",
                [CONTENT, MODEL, TOKENS])
            progress(f"{high:,} of {regular + long_session:,} messages")
        conn.execute("insert into sessionlog.users (id) values (%s)", [LONG_USER])
        conn.execute("insert into sessionlog.sessions (id, user_id, message_count) values (%s, %s, %s)",
                     [LONG_SESSION, LONG_USER, long_session])
        conn.execute(
            "insert into sessionlog.messages (user_id, session_id, position, role, content, model, tokens) "
            "select %s, %s, p, case when mod(p, 2) = 1 then 'user' else 'assistant' end, %s, %s, %s "
            "from generate_series(1, %s) p",
            [LONG_USER, LONG_SESSION, CONTENT, MODEL, TOKENS, long_session])
        conn.execute("reset session_replication_role")
        conn.execute("vacuum (analyze) sessionlog.users, sessionlog.sessions, sessionlog.messages")
        conn.execute("checkpoint")
    return time.perf_counter() - start


def table_size(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows, heap, total = conn.execute(
            "select (select count(*) from sessionlog.messages), "
            "pg_relation_size('sessionlog.messages'), pg_total_relation_size('sessionlog.messages')"
        ).fetchone()
    return {"messages": rows, "heap_bytes": heap, "total_bytes": total}


class GetMessages:
    """get_messages on the long session, a page of 100 at a random place."""

    SQL = ("select * from public.get_messages(session_id => %s, user_id => %s, "
           "after_position => %s, max_rows => 100)")
    BARE = ("select id, session_id, position, role, content, model, tokens, metadata, "
            "client_message_id, created_at from sessionlog.messages "
            "where user_id = %s and session_id = %s and position > %s order by position limit 100")

    def __init__(self, conn: psycopg.Connection, long_session: int, *, bare: bool, seed: int = 7) -> None:
        import random

        self.cur = conn.cursor()
        self.rand = random.Random(seed)
        self.last = max(long_session - 100, 0)
        self.bare = bare

    def __call__(self) -> int:
        after = self.rand.randint(0, self.last)
        if self.bare:
            self.cur.execute(self.BARE, (LONG_USER, LONG_SESSION, after), prepare=True)
        else:
            self.cur.execute(self.SQL, (LONG_SESSION, LONG_USER, after), prepare=True)
        return len(self.cur.fetchall())
