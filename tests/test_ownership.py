"""A session belongs to the user who created it: another user cannot write
into it, whatever the way in (42501, and nothing is written)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers import call, call_one, raises_sqlstate, table_counts


@pytest.fixture
def alices_session(db):
    """A session of alice's, addressed by its UUID, with one message."""
    session_id = str(uuid.uuid4())
    call_one(db, "log_message", user_id="alice", session_id=session_id, role="user",
             content="alice's")
    return session_id


def alices_messages(db, session_id):
    return [m["content"] for m in call(db, "get_messages", session_id=session_id, user_id="alice")]


@pytest.mark.parametrize("bob", ["bob", "brand-new-user"])
def test_another_user_writing_into_a_session_by_uuid_gets_42501_and_nothing_is_written(
        db, alices_session, bob):
    if bob == "bob":
        call_one(db, "create_session", user_id="bob", session_id="bobs-own")
    before = table_counts(db)
    with raises_sqlstate("42501", names=["session_id", alices_session]):
        call_one(db, "log_message", user_id=bob, session_id=alices_session, role="user",
                 content="intruder")
    assert table_counts(db) == before  # not even the new user's row
    assert alices_messages(db, alices_session) == ["alice's"]


def test_another_user_writing_by_the_upper_case_uuid_gets_42501(db, alices_session):
    before = table_counts(db)
    with raises_sqlstate("42501", names=["session_id"]):
        call_one(db, "log_message", user_id="bob", session_id=alices_session.upper(), role="user",
                 content="intruder", client_message_id="k1")
    assert table_counts(db) == before


def test_create_session_on_another_users_uuid_gets_42501(db, alices_session):
    before = table_counts(db)
    with raises_sqlstate("42501", names=["session_id", alices_session]):
        call_one(db, "create_session", user_id="bob", session_id=alices_session, title="mine now")
    assert table_counts(db) == before
    owner = db.execute("select user_id, title from sessionlog.sessions where id = %s",
                       [alices_session]).fetchone()
    assert owner == {"user_id": "alice", "title": None}


def test_the_owner_can_still_write_after_a_refused_intruder(db, alices_session):
    with raises_sqlstate("42501"):
        call_one(db, "log_message", user_id="bob", session_id=alices_session, role="user",
                 content="intruder")
    row = call_one(db, "log_message", user_id="alice", session_id=alices_session, role="user",
                   content="second")
    assert row["position"] == 2  # the refused write took no position
    assert alices_messages(db, alices_session) == ["alice's", "second"]


@pytest.mark.parametrize("index", [0, 2])
def test_log_messages_with_one_element_in_another_users_session_gets_42501_naming_it(
        db, alices_session, index):
    messages = [{"user_id": "bob", "session_id": f"bob-{i}", "role": "user", "content": str(i)}
                for i in range(3)]
    messages[index] = {"user_id": "bob", "session_id": alices_session, "role": "user",
                       "content": "intruder"}
    before = table_counts(db)
    with raises_sqlstate("42501", names=[f"messages[{index}]", alices_session]):
        call(db, "log_messages", messages=messages)
    assert table_counts(db) == before  # neither bob, nor his sessions, nor his messages
    assert alices_messages(db, alices_session) == ["alice's"]


def test_token_names_a_session_of_the_caller_only(db):
    alice = call_one(db, "log_message", user_id="alice", session_id="default", role="user",
                     content="a")
    bob = call_one(db, "log_message", user_id="bob", session_id="default", role="user",
                   content="b")
    assert bob["session_id"] != alice["session_id"] and bob["session_created"]
    owners = db.execute("select user_id from sessionlog.sessions where token = 'default'"
                        " order by user_id").fetchall()
    assert [o["user_id"] for o in owners] == ["alice", "bob"]


def test_the_composite_foreign_key_refuses_a_row_in_another_users_session(db, alices_session):
    # Whatever the caller does, even as the owner writing SQL directly.
    call_one(db, "create_session", user_id="bob")
    before = table_counts(db)
    with raises_sqlstate("23503", hint=False):
        db.execute("insert into sessionlog.messages (user_id, session_id, position, role, content)"
                   " values ('bob', %s, 99, 'user', 'x')", [alices_session])
    assert table_counts(db) == before


# --- as the `authenticated` role of Supabase/PostgREST, under RLS ----------

@pytest.fixture
def as_bob(dsn):
    """A connection acting as PostgREST does for a signed-in bob: role
    authenticated, JWT claims with sub = bob."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("set role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, false)",
                     ['{"sub": "bob", "role": "authenticated"}'])
        yield conn


def test_an_authenticated_caller_writing_into_another_users_session_gets_42501(
        db, alices_session, as_bob):
    before = table_counts(db)
    with raises_sqlstate("42501", names=["session_id"]):
        call_one(as_bob, "log_message", session_id=alices_session, role="user", content="x")
    with raises_sqlstate("42501", names=["session_id"]):
        call_one(as_bob, "create_session", session_id=alices_session)
    assert table_counts(db) == before


def test_an_authenticated_caller_may_not_act_for_another_user(db, alices_session, as_bob):
    before = table_counts(db)
    with raises_sqlstate("42501", names=["user_id", "alice"]):
        call_one(as_bob, "log_message", user_id="alice", session_id="s", role="user", content="x")
    assert table_counts(db) == before


def test_an_authenticated_caller_sees_another_users_session_as_missing(db, alices_session, as_bob):
    assert call(as_bob, "get_messages", session_id=alices_session) == []
    assert call_one(as_bob, "delete_session", session_id=alices_session)["deleted"] is False
    assert alices_messages(db, alices_session) == ["alice's"]


def test_an_authenticated_caller_writes_as_the_jwt_subject(db, as_bob):
    row = call_one(as_bob, "log_message", session_id="default", role="user", content="mine")
    assert (row["position"], row["session_created"], row["user_created"]) == (1, True, True)
    owner = db.execute("select user_id from sessionlog.sessions where id = %s",
                       [row["session_id"]]).fetchone()
    assert owner == {"user_id": "bob"}
    assert [m["content"] for m in call(as_bob, "get_messages", session_id="default")] == ["mine"]


def test_an_authenticated_caller_creates_sessions_logs_and_forgets_itself(db, as_bob):
    # The second and later calls find bob's user row and lock it (FOR KEY
    # SHARE / FOR NO KEY UPDATE): the role must be allowed to.
    assert call_one(as_bob, "create_session", session_id="one")["created"]
    assert call_one(as_bob, "create_session", session_id="two")["created"]
    rows = call(as_bob, "log_messages", messages=[
        {"session_id": "three", "role": "user", "content": "a"},
        {"session_id": "one", "role": "user", "content": "b"},
    ])
    assert [(r["position"], r["session_created"], r["user_created"]) for r in rows] == [
        (1, True, False), (1, False, False)]
    row = call_one(as_bob, "log_message", session_id="four", role="user", content="c")
    assert (row["position"], row["session_created"], row["user_created"]) == (1, True, False)
    assert call_one(as_bob, "forget_user") == {
        "user_deleted": True, "sessions_deleted": 4, "messages_deleted": 3,
        "behavioral_vectors_deleted": 0, "auth_decisions_deleted": 0}
    assert table_counts(db)["users"] == 0
