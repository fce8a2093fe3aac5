"""What is measured: one callable per case, one call = one unit of work.

Every step object writes through its own connection and returns the number
of messages it wrote. Setup (parents of the floor cases, session pools) is
done in the constructor, outside the timed loop. All cases write the same
message: a 200-character content, a role, a model and a token count.

The floor and the field patterns are plain SQL written as a careful
application would: prepared statements (psycopg ``prepare=True``), one
connection per client, positions unique.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

CONTENT = ("Sessionlog benchmark message: the quick brown fox jumps over the lazy dog, "
           "and the assistant explains why the foreign key would have failed. ") * 2
CONTENT = CONTENT[:200]
MODEL = "gpt-4o-mini"
TOKENS = 42
ROLES = ("user", "assistant")
#: Sessions each step object writes into, round robin, for "existing session" cases.
POOL_SIZE = 20


def connect(dsn: str, *, sync: bool, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A client connection; ``sync=False`` sets synchronous_commit off for it."""
    options = {} if sync else {"options": "-c synchronous_commit=off"}
    conn = psycopg.connect(dsn, autocommit=autocommit, **options)
    conn.prepare_threshold = 0
    return conn


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:20]}"


def make_pool(conn: psycopg.Connection[Any], size: int = POOL_SIZE) -> list[tuple[str, uuid.UUID]]:
    """``size`` new sessions of one new user, created with plain SQL."""
    user = new_user()
    sessions = [uuid.uuid4() for _ in range(size)]
    with conn.transaction():
        conn.execute("insert into sessionlog.users (id) values (%s)", [user])
        with conn.cursor() as cur:
            cur.executemany("insert into sessionlog.sessions (id, user_id) values (%s, %s)",
                            [(s, user) for s in sessions])
    return [(user, s) for s in sessions]


class Step:
    """A unit of work on one connection; ``retries`` counts 23505 retries."""

    retries = 0

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.cur = conn.cursor()
        self.n = 0

    def __call__(self) -> int:
        raise NotImplementedError


# --- the floor ------------------------------------------------------------------

BARE_INSERT = (
    "insert into sessionlog.messages "
    "(user_id, session_id, position, role, content, model, tokens) "
    "values (%s, %s, %s, %s, %s, %s, %s) returning id"
)


class BareInsert(Step):
    """One prepared INSERT of one message into an existing session; the
    position comes from a client-side counter (the parents exist)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn)
        self.pool = make_pool(conn)
        self.positions = dict.fromkeys(range(len(self.pool)), 0)

    def __call__(self) -> int:
        i = self.n % len(self.pool)
        self.n += 1
        self.positions[i] += 1
        user, session = self.pool[i]
        self.cur.execute(BARE_INSERT, (user, session, self.positions[i], ROLES[self.n % 2],
                                       CONTENT, MODEL, TOKENS), prepare=True)
        self.cur.fetchone()
        return 1


class Copy(Step):
    """COPY of ``batch`` messages into an existing session (the bulk ceiling)."""

    def __init__(self, conn: psycopg.Connection[Any], batch: int = 1000) -> None:
        super().__init__(conn)
        self.batch = batch
        self.pool = make_pool(conn)
        self.positions = dict.fromkeys(range(len(self.pool)), 0)

    def __call__(self) -> int:
        i = self.n % len(self.pool)
        self.n += 1
        user, session = self.pool[i]
        first = self.positions[i] + 1
        self.positions[i] += self.batch
        with self.cur.copy("copy sessionlog.messages "
                           "(user_id, session_id, position, role, content, model, tokens) "
                           "from stdin") as copy:
            for k in range(self.batch):
                copy.write_row((user, session, first + k, ROLES[k % 2], CONTENT, MODEL, TOKENS))
        return self.batch


# --- the patterns sessionlog replaces -------------------------------------------

class NotOwner(Exception):
    pass


def check_then_insert(conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], user: str,
                      session: uuid.UUID, role: str, *, transactional: bool,
                      content: str = CONTENT, max_attempts: int = 5) -> int:
    """The client-side pattern from the field, written faithfully: look up
    the session; if missing, look up the user, create it if missing, create
    the session; then number the message max(position) + 1 and insert it.
    Each statement is one round trip. Concurrent writers collide on the
    user, the session or the position (23505): such code retries, and so
    does this, up to ``max_attempts``. Returns the number of retries."""
    for attempt in range(max_attempts):
        try:
            with conn.transaction() if transactional else nullcontext():
                row = cur.execute("select user_id from sessionlog.sessions where id = %s",
                                  [session], prepare=True).fetchone()
                if row is None:
                    if cur.execute("select 1 from sessionlog.users where id = %s",
                                   [user], prepare=True).fetchone() is None:
                        cur.execute("insert into sessionlog.users (id) values (%s)",
                                    [user], prepare=True)
                    cur.execute("insert into sessionlog.sessions (id, user_id) values (%s, %s)",
                                [session, user], prepare=True)
                elif row[0] != user:
                    raise NotOwner(session)
                position = cur.execute(
                    "select coalesce(max(position), 0) + 1 from sessionlog.messages "
                    "where user_id = %s and session_id = %s",
                    [user, session], prepare=True).fetchone()[0]
                cur.execute(BARE_INSERT, (user, session, position, role, content, MODEL, TOKENS),
                            prepare=True)
                cur.fetchone()
            return attempt
        except psycopg.errors.UniqueViolation:
            if attempt == max_attempts - 1:
                raise
    raise AssertionError("unreachable")


class PatternNew(Step):
    """check-then-insert creating a new user and session each call."""

    def __init__(self, conn: psycopg.Connection[Any], *, transactional: bool) -> None:
        super().__init__(conn)
        self.transactional = transactional

    def __call__(self) -> int:
        self.n += 1
        self.retries += check_then_insert(self.conn, self.cur, new_user(), uuid.uuid4(),
                                          ROLES[self.n % 2], transactional=self.transactional)
        return 1


class PatternExisting(Step):
    """check-then-insert into an existing session."""

    def __init__(self, conn: psycopg.Connection[Any], *, transactional: bool) -> None:
        super().__init__(conn)
        self.transactional = transactional
        self.pool = make_pool(conn)

    def __call__(self) -> int:
        user, session = self.pool[self.n % len(self.pool)]
        self.n += 1
        self.retries += check_then_insert(self.conn, self.cur, user, session, ROLES[self.n % 2],
                                          transactional=self.transactional)
        return 1


# --- sessionlog -----------------------------------------------------------------

LOG_MESSAGE = ("select * from public.log_message(user_id => %s, session_id => %s, role => %s, "
               "content => %s, model => %s, tokens => %s)")


class LogMessageExisting(Step):
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn)
        self.pool = [(u, str(s)) for u, s in make_pool(conn)]

    def __call__(self) -> int:
        user, session = self.pool[self.n % len(self.pool)]
        self.n += 1
        self.cur.execute(LOG_MESSAGE, (user, session, ROLES[self.n % 2], CONTENT, MODEL, TOKENS),
                         prepare=True)
        self.cur.fetchone()
        return 1


class LogMessageNew(Step):
    """log_message creating a new user and a new session (by UUID) each call."""

    def __call__(self) -> int:
        self.n += 1
        self.cur.execute(LOG_MESSAGE, (new_user(), str(uuid.uuid4()), ROLES[self.n % 2], CONTENT,
                                       MODEL, TOKENS), prepare=True)
        self.cur.fetchone()
        return 1


class LogInteraction(Step):
    """log_interaction (a prompt and its response) into an existing session."""

    SQL = ("select * from public.log_interaction(user_id => %s, session_id => %s, prompt => %s, "
           "response => %s, model => %s, tokens => %s)")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn)
        self.pool = [(u, str(s)) for u, s in make_pool(conn)]

    def __call__(self) -> int:
        user, session = self.pool[self.n % len(self.pool)]
        self.n += 1
        self.cur.execute(self.SQL, (user, session, CONTENT, CONTENT, MODEL, TOKENS), prepare=True)
        self.cur.fetchone()
        return 2


class StoreAuthDecision(Step):
    """store_auth_decision into an existing session (writes no message)."""

    SQL = ("select * from public.store_auth_decision(user_id => %s, session_id => %s, "
           "decision => %s, confidence => %s, risk_score => %s, risk_level => %s)")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn)
        self.pool = [(u, str(s)) for u, s in make_pool(conn)]

    def __call__(self) -> int:
        user, session = self.pool[self.n % len(self.pool)]
        self.n += 1
        self.cur.execute(self.SQL, (user, session, "allow", 0.93, 0.07, "low"), prepare=True)
        self.cur.fetchone()
        return 0


class LogMessages(Step):
    """log_messages with a batch of ``batch`` messages into an existing session."""

    SQL = "select * from public.log_messages(messages => %s)"

    def __init__(self, conn: psycopg.Connection[Any], batch: int) -> None:
        super().__init__(conn)
        self.batch = batch
        self.payloads = [
            [{"user_id": u, "session_id": str(s), "role": ROLES[k % 2], "content": CONTENT,
              "model": MODEL, "tokens": TOKENS} for k in range(batch)]
            for u, s in make_pool(conn)
        ]

    def __call__(self) -> int:
        payload = self.payloads[self.n % len(self.payloads)]
        self.n += 1
        self.cur.execute(self.SQL, [Jsonb(payload)], prepare=True)
        self.cur.fetchall()
        return self.batch


# --- shared brand-new sessions, for concurrent clients ----------------------------

class SharedSessions:
    """The ids of the k-th call of a concurrent run: consecutive calls (from
    whichever client) go to the same brand-new session, ``per_session`` of
    them, and ``sessions_per_user`` sessions share a new user, so clients
    race to create the same parents, as requests of one chat do."""

    def __init__(self, per_session: int = 8, sessions_per_user: int = 4) -> None:
        self.counter = itertools.count()
        self.base = uuid.uuid4().int & ~((1 << 40) - 1)
        self.prefix = uuid.uuid4().hex[:12]
        self.per_session = per_session
        self.sessions_per_user = sessions_per_user

    def next(self) -> tuple[str, uuid.UUID, int]:
        k = next(self.counter)  # atomic under the GIL
        s = k // self.per_session
        return f"user-{self.prefix}-{s // self.sessions_per_user}", uuid.UUID(int=self.base | s), k


class LogMessageShared(Step):
    def __init__(self, conn: psycopg.Connection[Any], ids: SharedSessions) -> None:
        super().__init__(conn)
        self.ids = ids

    def __call__(self) -> int:
        user, session, k = self.ids.next()
        self.cur.execute(LOG_MESSAGE, (user, str(session), ROLES[k % 2], CONTENT, MODEL, TOKENS),
                         prepare=True)
        self.cur.fetchone()
        return 1


class PatternShared(Step):
    def __init__(self, conn: psycopg.Connection[Any], ids: SharedSessions, *,
                 transactional: bool) -> None:
        super().__init__(conn)
        self.ids = ids
        self.transactional = transactional

    def __call__(self) -> int:
        user, session, k = self.ids.next()
        self.retries += check_then_insert(self.conn, self.cur, user, session, ROLES[k % 2],
                                          transactional=self.transactional)
        return 1


#: The single-client cases: name → factory(conn) → step.
StepFactory = Callable[[psycopg.Connection[Any]], Step]


def single_cases(batches: tuple[int, ...] = (1, 10, 100, 1000)) -> Iterator[tuple[str, StepFactory]]:
    yield "bare INSERT", BareInsert
    yield "COPY 1000", lambda c: Copy(c, 1000)
    yield "check-then-insert new (autocommit)", lambda c: PatternNew(c, transactional=False)
    yield "check-then-insert new (transaction)", lambda c: PatternNew(c, transactional=True)
    yield "check-then-insert existing (autocommit)", lambda c: PatternExisting(c, transactional=False)
    yield "log_message existing", LogMessageExisting
    yield "log_message new user+session", LogMessageNew
    yield "log_interaction", LogInteraction
    yield "store_auth_decision", StoreAuthDecision
    for b in batches:
        yield f"log_messages ×{b}", lambda c, b=b: LogMessages(c, b)
