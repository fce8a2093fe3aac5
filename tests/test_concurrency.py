"""Concurrent writers, each on its own connection, released at once by a
barrier: parents are created exactly once, positions stay 1..N without a gap
or a duplicate, batches do not deadlock, and retries of one idempotency key
write one row. No error of any kind is acceptable."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import psycopg
import pytest

from tests.helpers import call, call_one, connect, run_together, table_counts

WRITERS = 8
SESSIONS = 50
ROUNDS = 3  # messages per writer per session


def assert_no_errors(results):
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} writers failed, first: {errors[0]!r}"


def assert_gap_free(db, expected_per_session):
    """Every session's positions are exactly 1..N, and message_count is N."""
    rows = db.execute(
        "select s.id, s.message_count, count(m.position) as n,"
        "       coalesce(array_agg(m.position order by m.position)"
        "                filter (where m.position is not null), '{}') as positions"
        " from sessionlog.sessions s left join sessionlog.messages m"
        "   on m.user_id = s.user_id and m.session_id = s.id"
        " group by s.id, s.message_count").fetchall()
    for row in rows:
        n = expected_per_session[row["id"]]
        assert row["positions"] == list(range(1, n + 1)), row["id"]
        assert row["message_count"] == row["n"] == n
    assert {row["id"] for row in rows} == set(expected_per_session)


def new_targets():
    """50 brand-new sessions of 25 brand-new users (two sessions each): half
    addressed by a client-generated UUID, half by a token."""
    targets = []
    for i in range(SESSIONS):
        user_id = f"user-{i // 2}-{uuid.uuid4().hex[:8]}"
        session_id = str(uuid.uuid4()) if i % 2 == 0 else f"token-{i}"
        targets.append((user_id, session_id))
    return targets


def test_concurrent_first_writes_create_one_user_and_one_session_with_gap_free_positions(dsn, db):
    targets = new_targets()

    def writer(number):
        # First round in the same order for everyone, so that every session and
        # user is created under contention; then each writer in its own order.
        later = targets * (ROUNDS - 1)
        random.Random(number).shuffle(later)
        order = targets + later
        logged = []
        with connect(dsn) as conn:
            for seq, (user_id, session_id) in enumerate(order):
                row = call_one(conn, "log_message", user_id=user_id, session_id=session_id,
                               role="user", content=f"w{number}-{seq}")
                logged.append((number, user_id, session_id, row))
        return logged

    results = run_together([lambda n=n: writer(n) for n in range(WRITERS)])
    assert_no_errors(results)
    logged = [entry for result in results for entry in result]
    assert len(logged) == WRITERS * SESSIONS * ROUNDS

    users = {user_id for user_id, _ in targets}
    assert table_counts(db) == {"users": len(users), "sessions": SESSIONS,
                                "messages": WRITERS * SESSIONS * ROUNDS,
                                "behavioral_vectors": 0, "auth_decisions": 0}
    # Each target resolved to one session id, whoever got there first.
    ids = {}
    for _, user_id, session_id, row in logged:
        ids.setdefault((user_id, session_id), set()).add(row["session_id"])
    assert all(len(found) == 1 for found in ids.values()) and len(ids) == SESSIONS
    # Exactly one caller was told it created each session and each user.
    created_sessions = Counter(row["session_id"] for *_, row in logged if row["session_created"])
    assert sorted(created_sessions.values()) == [1] * SESSIONS
    created_users = Counter(user_id for _, user_id, _, row in logged if row["user_created"])
    assert set(created_users) == users and set(created_users.values()) == {1}
    # Positions: 1..N in every session, and what each caller was told is what is stored.
    assert_gap_free(db, {next(iter(found)): WRITERS * ROUNDS for found in ids.values()})
    stored = {r["id"]: r["position"] for r in db.execute("select id, position from sessionlog.messages")}
    assert all(stored[row["message_id"]] == row["position"] for *_, row in logged)
    # A writer's own messages to a session keep the order it sent them in
    # (logged is in each writer's sending order).
    last = {}
    for number, _, _, row in logged:
        key = (number, row["session_id"])
        assert row["position"] > last.get(key, 0)
        last[key] = row["position"]


def test_concurrent_create_session_and_log_message_on_the_same_new_uuid(dsn, db):
    pairs = [(f"user-{i}", str(uuid.uuid4())) for i in range(20)]

    def creator():
        with connect(dsn) as conn:
            return [call_one(conn, "create_session", user_id=u, session_id=s) for u, s in pairs]

    def logger():
        with connect(dsn) as conn:
            return [call_one(conn, "log_message", user_id=u, session_id=s, role="user",
                             content="hi") for u, s in pairs]

    results = run_together([creator, logger] * (WRITERS // 2))
    assert_no_errors(results)
    creators, loggers = results[0::2], results[1::2]
    for i, (user_id, session_id) in enumerate(pairs):
        creates = [result[i] for result in creators]
        logs = [result[i] for result in loggers]
        assert {r["session_id"] for r in creates + logs} == {uuid.UUID(session_id)}
        assert all(r["user_id"] == user_id for r in creates)
        # Exactly one of the calls created the session; at most one logger the user.
        assert [r["created"] for r in creates].count(True) + [
            r["session_created"] for r in logs].count(True) == 1
        assert [r["user_created"] for r in logs].count(True) <= 1
        assert sorted(r["position"] for r in logs) == list(range(1, len(loggers) + 1))
    assert table_counts(db) == {"users": len(pairs), "sessions": len(pairs),
                                "messages": len(pairs) * len(loggers),
                                "behavioral_vectors": 0, "auth_decisions": 0}


def test_concurrent_first_writes_of_an_existing_user_to_one_new_session_never_raise_23505(dsn, db):
    """An existing user takes no lock that would queue the writers, so their
    session inserts really race: the second must find the first's row (any
    unique index may be the one that collides), not fail with 23505."""
    call_one(db, "create_session", user_id="known", session_id="warm-up")
    sessions = [str(uuid.uuid4()) for _ in range(40)]

    def writer():
        with connect(dsn) as conn:
            return [call_one(conn, "log_message", user_id="known", session_id=s, role="user",
                             content="hi") for s in sessions]

    results = run_together([writer] * 16)
    assert_no_errors(results)
    for i in range(len(sessions)):
        assert sorted(r["position"] for r in (result[i] for result in results)) == list(range(1, 17))
        assert [result[i]["session_created"] for result in results].count(True) == 1
    assert table_counts(db)["sessions"] == len(sessions) + 1


def test_concurrent_log_messages_batches_sharing_sessions_neither_deadlock_nor_leave_gaps(dsn, db):
    targets = new_targets()[:12]
    batches_per_writer, batch_size = 6, 25

    def writer(number):
        rng = random.Random(number)
        rows = []
        with connect(dsn) as conn:
            for b in range(batches_per_writer):
                messages = []
                for i in range(batch_size):
                    user_id, session_id = rng.choice(targets)
                    messages.append({"user_id": user_id, "session_id": session_id,
                                     "role": "assistant", "content": f"w{number}-b{b}-{i}"})
                rows.extend(zip(messages, call(conn, "log_messages", messages=messages), strict=True))
        return rows

    results = run_together([lambda n=n: writer(n) for n in range(WRITERS)])
    assert_no_errors(results)
    rows = [entry for result in results for entry in result]
    assert len(rows) == WRITERS * batches_per_writer * batch_size
    per_session = Counter(row["session_id"] for _, row in rows)
    assert_gap_free(db, per_session)
    assert table_counts(db)["messages"] == len(rows)
    assert table_counts(db)["sessions"] == len({(m["user_id"], m["session_id"]) for m, _ in rows})
    stored = {r["id"]: (r["content"], r["position"]) for r in
              db.execute("select id, content, position from sessionlog.messages")}
    assert all(stored[row["message_id"]] == (m["content"], row["position"]) for m, row in rows)


def test_concurrent_single_and_batch_writers_share_positions(dsn, db):
    targets = new_targets()[:10]

    def single(number):
        with connect(dsn) as conn:
            for user_id, session_id in targets * 2:
                call_one(conn, "log_message", user_id=user_id, session_id=session_id,
                         role="user", content=f"single-{number}")

    def batched(number):
        messages = [{"user_id": u, "session_id": s, "role": "user", "content": f"batch-{number}"}
                    for u, s in reversed(targets * 2)]
        with connect(dsn) as conn:
            call(conn, "log_messages", messages=messages)
            call(conn, "log_messages", messages=messages)

    results = run_together([lambda n=n: (single if n % 2 else batched)(n) for n in range(WRITERS)])
    assert_no_errors(results)
    ids = db.execute("select id from sessionlog.sessions").fetchall()
    assert len(ids) == len(targets)
    # Per session: 2 messages from each single writer, 2 calls x 2 elements from each batch writer.
    per_session = (WRITERS // 2) * 2 + (WRITERS // 2) * 4
    assert_gap_free(db, {r["id"]: per_session for r in ids})


def test_concurrent_retries_with_the_same_client_message_id_write_one_row(dsn, db):
    session_id = str(uuid.uuid4())

    def retry():
        with connect(dsn) as conn:
            return call_one(conn, "log_message", user_id="retrying-user", session_id=session_id,
                            role="user", content="pay 10 EUR", client_message_id="payment-1")

    def retry_in_batch():
        with connect(dsn) as conn:
            return call(conn, "log_messages", messages=[
                {"user_id": "retrying-user", "session_id": session_id, "role": "user",
                 "content": "pay 10 EUR", "client_message_id": "payment-1"}])[0]

    results = run_together([retry] * 6 + [retry_in_batch] * 2)
    assert_no_errors(results)
    assert [r["duplicate"] for r in results].count(False) == 1
    assert len({r["message_id"] for r in results}) == 1
    assert {r["position"] for r in results} == {1}
    assert [r["session_created"] for r in results].count(True) == 1
    assert table_counts(db) == {"users": 1, "sessions": 1, "messages": 1,
                                "behavioral_vectors": 0, "auth_decisions": 0}


WRITES = {
    "log_message": lambda conn, user_id, token: call_one(
        conn, "log_message", user_id=user_id, session_id=token, role="user", content="x"),
    "create_session": lambda conn, user_id, token: call_one(
        conn, "create_session", user_id=user_id, session_id=token),
    "log_messages": lambda conn, user_id, token: call(conn, "log_messages", messages=[
        {"user_id": user_id, "session_id": session_id, "role": "user", "content": "x"}
        for session_id in (token, "shared")]),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_forget_user_racing_writes_of_the_same_users_never_fails(dsn, db, write):
    # Writers hit new sessions and a session that keeps existing ("shared")
    # while two forget_user calls keep deleting their users. A writer that
    # found the user must keep it until its session is inserted (else 23503),
    # and everyone must take the user and session locks in one order (else
    # 40P01).
    users = [f"user-{i}" for i in range(2)]
    calls = 150

    def writer(number):
        failures = []
        with connect(dsn) as conn:
            for i in range(calls):
                token = "shared" if i % 3 else f"w{number}-{i}"
                try:
                    WRITES[write](conn, users[i % len(users)], token)
                except psycopg.Error as exc:
                    failures.append(exc.diag.sqlstate)
        return failures

    def forgetter():
        failures = []
        with connect(dsn) as conn:
            for i in range(calls):
                try:
                    call_one(conn, "forget_user", user_id=users[i % len(users)])
                except psycopg.Error as exc:
                    failures.append(exc.diag.sqlstate)
        return failures

    results = run_together([lambda n=n: writer(n) for n in range(3)] + [forgetter, forgetter])
    assert_no_errors(results)
    assert Counter(sqlstate for failures in results for sqlstate in failures) == Counter()
    # What survived is consistent: every session's messages are numbered 1..N.
    counts = db.execute("select id, message_count from sessionlog.sessions").fetchall()
    assert_gap_free(db, {r["id"]: r["message_count"] for r in counts})
