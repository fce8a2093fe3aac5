"""The conversation verbs through every client: ``SessionLog`` (built each
documented way), ``AsyncSessionLog``, and ``SupabaseSessionLog`` over
supabase-py and the PostgREST stand-in as service_role and as a signed-in
user (its own sessions only): same results, typed, same errors."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sessionlog import (
    AsyncSessionLog,
    InvalidArgument,
    Message,
    MessagesCleared,
    NotOwner,
    Session,
    SessionLog,
    SessionsPruned,
    SupabaseSessionLog,
)

from tests.test_async import alog  # noqa: F401  (fixture)
from tests.test_client import assert_typed, log, snapshot  # noqa: F401  (fixture)
from tests.test_supabase import (  # noqa: F401  (fixtures)
    api,
    as_user,
    connect,
    direct,
    service,
)


def age(db: psycopg.Connection, days: int) -> None:
    db.execute("update sessionlog.sessions set last_activity_at = last_activity_at"
               " - make_interval(days => %s)", [days])


def server_now(db: psycopg.Connection) -> dt.datetime:
    return db.execute("select now() as t").fetchone()["t"]


def conversation(client: Any, user: str | None, session: str, db: psycopg.Connection) -> None:
    """The verbs, in the order a chat app uses them; ``user`` None means the
    caller's own (a signed-in user's JWT subject)."""
    who = {} if user is None else {"user_id": user}
    for i in range(1, 8):
        client.log_message(**who, session_id=session, role="user", content=f"m{i}",
                           client_message_id=f"k{i}")

    tail = client.get_messages(**who, session_id=session, latest=True, max_rows=3)
    assert [m.content for m in tail] == ["m5", "m6", "m7"]
    for message in tail:
        assert isinstance(message, Message)
        assert_typed(message)
    earlier = client.get_messages(**who, session_id=session, latest=True, max_rows=3,
                                  before_position=tail[0].position)
    assert [m.position for m in earlier] == [2, 3, 4]
    assert [m.position for m in client.get_messages(**who, session_id=session, after_position=2,
                                                    before_position=5)] == [3, 4]

    popped = client.pop_message(**who, session_id=session)
    assert isinstance(popped, Message) and (popped.position, popped.content) == (7, "m7")
    assert_typed(popped)
    again = client.log_message(**who, session_id=session, role="assistant", content="m7 again",
                               client_message_id="k7")
    assert (again.position, again.duplicate) == (7, False)

    renamed = client.update_session(**who, session_id=session, title="Trip",
                                    metadata={"pinned": True})
    assert isinstance(renamed, Session)
    assert_typed(renamed)
    assert (renamed.title, renamed.metadata, renamed.message_count) == \
        ("Trip", {"pinned": True}, 7)
    merged = client.update_session(**who, session_id=session, metadata={"lang": "fr"})
    assert (merged.title, merged.metadata) == ("Trip", {"pinned": True, "lang": "fr"})
    assert client.list_sessions(**who)[0] == merged

    cleared = client.clear_messages(**who, session_id=session)
    assert cleared == MessagesCleared(messages_deleted=7)
    assert client.pop_message(**who, session_id=session) is None
    assert client.get_messages(**who, session_id=session, latest=True) == []
    assert client.log_message(**who, session_id=session, role="user", content="fresh",
                              client_message_id="k1").position == 1

    with pytest.raises(InvalidArgument) as raised:
        client.update_session(**who, session_id="no-such-session", title="t")
    assert raised.value.sqlstate == "22023" and "session_id" in raised.value.message
    with pytest.raises(InvalidArgument) as raised:
        client.prune_sessions(**who, inactive_before=server_now(db), max_sessions=0)
    assert "max_sessions" in raised.value.message

    age(db, 40)
    pruned = client.prune_sessions(**who, inactive_before=server_now(db) - dt.timedelta(days=30),
                                   max_sessions=10)
    assert pruned == SessionsPruned(sessions_deleted=1, messages_deleted=1,
                                    behavioral_vectors_deleted=0, auth_decisions_deleted=0,
                                    more=False)


def test_sessionlog_runs_the_conversation_verbs(log: SessionLog, db) -> None:  # noqa: F811
    conversation(log, "u1", "chat", db)


def test_supabase_service_role_runs_the_conversation_verbs(service: SupabaseSessionLog,  # noqa: F811
                                                           db) -> None:
    conversation(service, "u1", str(uuid.uuid4()), db)


def test_supabase_signed_in_user_runs_the_conversation_verbs_on_its_own_session(
        as_user: Callable[[str], SupabaseSessionLog], db) -> None:  # noqa: F811
    conversation(as_user("alice"), None, "chat", db)


def test_supabase_results_equal_sessionlog_results(service: SupabaseSessionLog,  # noqa: F811
                                                   direct: SessionLog) -> None:  # noqa: F811
    for i in range(5):
        direct.log_message(user_id="u1", session_id="s", role="user", content=f"m{i}")
    for args in (dict(latest=True, max_rows=2), dict(latest=True, before_position=3),
                 dict(after_position=1, before_position=4)):
        assert service.get_messages(session_id="s", user_id="u1", **args) == \
            direct.get_messages(session_id="s", user_id="u1", **args)
    assert service.update_session(session_id="s", user_id="u1", title="t") == \
        direct.list_sessions(user_id="u1")[0]


def test_a_signed_in_user_cannot_touch_another_users_session(
        as_user: Callable[[str], SupabaseSessionLog], direct: SessionLog,  # noqa: F811
        db: psycopg.Connection) -> None:
    session = str(uuid.uuid4())
    direct.log_message(user_id="alice", session_id=session, role="user", content="hers")
    age(db, 40)
    bob = as_user("bob")
    before = snapshot(db)
    assert bob.pop_message(session_id=session) is None
    assert bob.clear_messages(session_id=session).messages_deleted == 0
    assert bob.get_messages(session_id=session, latest=True) == []
    with pytest.raises(InvalidArgument):
        bob.update_session(session_id=session, title="mine")
    assert bob.prune_sessions(inactive_before=server_now(db)).sessions_deleted == 0
    with pytest.raises(NotOwner):
        bob.prune_sessions(inactive_before=server_now(db), user_id="alice")
    assert snapshot(db) == before


# The async fixtures run in the session's event loop (pyproject), so does this.
@pytest.mark.asyncio(loop_scope="session")
async def test_async_sessionlog_runs_the_conversation_verbs(
        alog: AsyncSessionLog, db: psycopg.Connection) -> None:  # noqa: F811
    for i in range(1, 6):
        await alog.log_message(user_id="u1", session_id="chat", role="user", content=f"m{i}",
                               client_message_id=f"k{i}")
    tail = await alog.get_messages(session_id="chat", user_id="u1", latest=True, max_rows=2)
    assert [m.content for m in tail] == ["m4", "m5"]
    earlier = await alog.get_messages(session_id="chat", user_id="u1", latest=True, max_rows=2,
                                      before_position=tail[0].position)
    assert [m.content for m in earlier] == ["m2", "m3"]
    popped = await alog.pop_message(session_id="chat", user_id="u1")
    assert isinstance(popped, Message) and popped.content == "m5"
    renamed = await alog.update_session(session_id="chat", user_id="u1", title="T",
                                        metadata={"a": 1})
    assert (renamed.title, renamed.metadata, renamed.message_count) == ("T", {"a": 1}, 4)
    assert await alog.clear_messages(session_id="chat", user_id="u1") == \
        MessagesCleared(messages_deleted=4)
    assert await alog.pop_message(session_id="chat", user_id="u1") is None
    assert (await alog.log_message(user_id="u1", session_id="chat", role="user",
                                   content="x", client_message_id="k5")).position == 1
    with pytest.raises(InvalidArgument):
        await alog.update_session(session_id="other", user_id="u1", title="t")
    age(db, 40)
    pruned = await alog.prune_sessions(inactive_before=server_now(db) - dt.timedelta(days=30))
    assert (pruned.sessions_deleted, pruned.messages_deleted, pruned.more) == (1, 1, False)
