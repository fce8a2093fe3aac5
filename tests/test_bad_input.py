"""Bad arguments are refused with SQLSTATE 22023 (invalid_parameter_value),
a message naming the argument (and the bad value where there is one), and a
HINT saying what is accepted; and nothing at all is written."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

import sessionlog

from tests.helpers import OMIT, call, call_one, raises_sqlstate, table_counts

LONG_ID = "x" * 256


class Case(NamedTuple):
    id: str
    fn: str
    args: dict[str, Any]
    names: list[str]
    sqlstate: str = "22023"


def message(**changes: Any) -> dict[str, Any]:
    """log_message's arguments for the seeded session, with some changed."""
    return {"user_id": "u1", "session_id": "existing", "role": "user", "content": "hi"} | changes


def element(**changes: Any) -> dict[str, Any]:
    """A valid element of log_messages, for a new user and session, with some
    keys changed (a key set to OMIT is left out)."""
    base = {"user_id": "new-user", "session_id": "new-session", "role": "user", "content": "hi"}
    return {k: v for k, v in (base | changes).items() if v is not OMIT}


def batch(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"messages": list(elements)}


CASES = [
    # log_message: user_id
    Case("log_message/user_id-empty", "log_message", message(user_id=""), ["user_id", "empty"]),
    Case("log_message/user_id-whitespace-only", "log_message", message(user_id=" \t\n "),
         ["user_id", "empty"]),
    Case("log_message/user_id-256-chars", "log_message", message(user_id=LONG_ID),
         ["user_id", "256 characters"]),
    Case("log_message/user_id-control-char", "log_message", message(user_id="bad\x01id"),
         ["user_id", "control character"]),
    Case("log_message/user_id-del-char", "log_message", message(user_id="bad\x7fid"),
         ["user_id", "control character"]),
    Case("log_message/user_id-inner-newline", "log_message", message(user_id="bad\nid"),
         ["user_id", "control character"]),
    Case("log_message/user_id-null", "log_message", message(user_id=None), ["user_id", "required"]),
    Case("log_message/user_id-missing", "log_message", message(user_id=OMIT),
         ["user_id", "required"]),
    # log_message: session_id
    Case("log_message/session_id-null", "log_message", message(session_id=None),
         ["session_id", "required"]),
    Case("log_message/session_id-missing", "log_message", message(session_id=OMIT),
         ["session_id", "required"]),
    Case("log_message/session_id-empty", "log_message", message(session_id=""),
         ["session_id", "empty"]),
    Case("log_message/session_id-whitespace-only", "log_message", message(session_id="   "),
         ["session_id", "empty"]),
    Case("log_message/session_id-256-chars", "log_message", message(session_id=LONG_ID),
         ["session_id", "256 characters"]),
    Case("log_message/session_id-control-char", "log_message", message(session_id="chat\x1b[0m"),
         ["session_id", "control character"]),
    # log_message: role, content, tokens, metadata
    Case("log_message/role-null", "log_message", message(role=None), ["role", "required"]),
    Case("log_message/role-missing", "log_message", message(role=OMIT), ["role", "required"]),
    Case("log_message/role-unknown", "log_message", message(role="bot"), ["role", "'bot'"]),
    Case("log_message/role-empty", "log_message", message(role=""), ["role", "not accepted"]),
    Case("log_message/content-null", "log_message", message(content=None), ["content", "required"]),
    Case("log_message/content-missing", "log_message", message(content=OMIT),
         ["content", "required"]),
    Case("log_message/tokens-negative", "log_message", message(tokens=-1), ["tokens", "-1"]),
    Case("log_message/metadata-array", "log_message", message(metadata=[1, 2]),
         ["metadata", "array"]),
    Case("log_message/metadata-string", "log_message", message(metadata=Jsonb("text")),
         ["metadata", "string"]),
    Case("log_message/metadata-number", "log_message", message(metadata=Jsonb(42)),
         ["metadata", "number"]),
    Case("log_message/metadata-boolean", "log_message", message(metadata=Jsonb(True)),
         ["metadata", "boolean"]),
    # log_message: client_message_id
    Case("log_message/client_message_id-empty", "log_message", message(client_message_id=""),
         ["client_message_id", "empty"]),
    Case("log_message/client_message_id-whitespace-only", "log_message",
         message(client_message_id="\t "), ["client_message_id", "empty"]),
    Case("log_message/client_message_id-256-chars", "log_message",
         message(client_message_id=LONG_ID), ["client_message_id", "256 characters"]),
    Case("log_message/client_message_id-control-char", "log_message",
         message(client_message_id="k\x02"), ["client_message_id", "control character"]),
    # create_session
    Case("create_session/user_id-empty", "create_session", {"user_id": ""}, ["user_id", "empty"]),
    Case("create_session/user_id-null", "create_session", {"user_id": None},
         ["user_id", "required"]),
    Case("create_session/session_id-whitespace-only", "create_session",
         {"user_id": "u1", "session_id": "  "}, ["session_id", "empty"]),
    Case("create_session/session_id-256-chars", "create_session",
         {"user_id": "u1", "session_id": LONG_ID}, ["session_id", "256 characters"]),
    Case("create_session/metadata-array", "create_session",
         {"user_id": "u1", "metadata": ["a"]}, ["metadata", "array"]),
    # log_messages: the batch itself
    Case("log_messages/null", "log_messages", {"messages": None}, ["messages", "NULL"]),
    Case("log_messages/missing", "log_messages", {}, ["messages", "NULL"]),
    Case("log_messages/object-not-array", "log_messages", {"messages": element()},
         ["messages", "object"]),
    Case("log_messages/string-not-array", "log_messages", {"messages": Jsonb("[]")},
         ["messages", "string"]),
    Case("log_messages/too-many-elements", "log_messages",
         {"messages": [element()] * 10001}, ["messages", "10000"]),
    # log_messages: one bad element
    Case("log_messages/element-number", "log_messages", batch(element(), 42),
         ["messages[1]", "number"]),
    Case("log_messages/element-null", "log_messages", batch(element(), None),
         ["messages[1]", "null"]),
    Case("log_messages/element-array", "log_messages", batch([element()]),
         ["messages[0]", "array"]),
    Case("log_messages/element-unknown-key", "log_messages", batch(element(text="hi")),
         ["messages[0]", "unknown key", "text"]),
    Case("log_messages/element-content-number", "log_messages", batch(element(content=42)),
         ["messages[0].content", "number"]),
    Case("log_messages/element-tokens-string", "log_messages", batch(element(tokens="5")),
         ["messages[0].tokens", "string"]),
    Case("log_messages/element-role-boolean", "log_messages", batch(element(role=True)),
         ["messages[0].role", "boolean"]),
    Case("log_messages/element-metadata-array", "log_messages", batch(element(metadata=[1])),
         ["messages[0].metadata", "array"]),
    Case("log_messages/element-tokens-negative", "log_messages", batch(element(tokens=-3)),
         ["messages[0].tokens", "-3"]),
    Case("log_messages/element-tokens-fraction", "log_messages", batch(element(tokens=1.5)),
         ["messages[0].tokens", "1.5"]),
    Case("log_messages/element-tokens-too-big", "log_messages",
         batch(element(tokens=3_000_000_000)), ["messages[0].tokens", "3000000000"]),
    Case("log_messages/element-content-missing", "log_messages", batch(element(content=OMIT)),
         ["messages[0].content", "required"]),
    Case("log_messages/element-role-missing", "log_messages", batch(element(role=OMIT)),
         ["messages[0].role", "required"]),
    Case("log_messages/element-user_id-empty", "log_messages", batch(element(user_id="")),
         ["messages[0].user_id", "empty"]),
    Case("log_messages/element-session_id-missing", "log_messages",
         batch(element(session_id=OMIT)), ["messages[0].session_id", "required"]),
    Case("log_messages/element-client_message_id-control-char", "log_messages",
         batch(element(client_message_id="a\x03")), ["messages[0].client_message_id", "control"]),
    Case("log_messages/bad-element-at-index-3", "log_messages",
         batch(element(), element(session_id="s2"), element(user_id="u2"), element(role="bot"),
               element()), ["messages[3].role", "bot"]),
    # get_messages
    Case("get_messages/max_rows-0", "get_messages",
         {"session_id": "existing", "user_id": "u1", "max_rows": 0}, ["max_rows", "0"]),
    Case("get_messages/max_rows-10001", "get_messages",
         {"session_id": "existing", "user_id": "u1", "max_rows": 10001}, ["max_rows", "10001"]),
    Case("get_messages/max_rows-negative", "get_messages",
         {"session_id": "existing", "user_id": "u1", "max_rows": -5}, ["max_rows", "-5"]),
    Case("get_messages/after_position-negative", "get_messages",
         {"session_id": "existing", "user_id": "u1", "after_position": -1},
         ["after_position", "-1"]),
    Case("get_messages/session_id-null", "get_messages", {"session_id": None, "user_id": "u1"},
         ["session_id", "required"]),
    Case("get_messages/session_id-empty", "get_messages", {"session_id": "", "user_id": "u1"},
         ["session_id", "empty"]),
    Case("get_messages/token-without-user_id", "get_messages", {"session_id": "existing"},
         ["user_id", "token"]),
    # list_sessions
    Case("list_sessions/user_id-null", "list_sessions", {"user_id": None}, ["user_id", "required"]),
    Case("list_sessions/user_id-whitespace-only", "list_sessions", {"user_id": " "},
         ["user_id", "empty"]),
    Case("list_sessions/max_rows-0", "list_sessions", {"user_id": "u1", "max_rows": 0},
         ["max_rows", "0"]),
    Case("list_sessions/max_rows-10001", "list_sessions", {"user_id": "u1", "max_rows": 10001},
         ["max_rows", "10001"]),
    # delete_session and forget_user
    Case("delete_session/session_id-null", "delete_session", {"session_id": None, "user_id": "u1"},
         ["session_id", "required"]),
    Case("delete_session/session_id-whitespace-only", "delete_session",
         {"session_id": "  ", "user_id": "u1"}, ["session_id", "empty"]),
    Case("delete_session/user_id-empty", "delete_session", {"session_id": "existing", "user_id": ""},
         ["user_id", "empty"]),
    Case("delete_session/token-without-user_id", "delete_session", {"session_id": "existing"},
         ["user_id", "token"]),
    Case("forget_user/user_id-null", "forget_user", {"user_id": None}, ["user_id", "required"]),
    Case("forget_user/user_id-empty", "forget_user", {"user_id": ""}, ["user_id", "empty"]),
    Case("forget_user/user_id-256-chars", "forget_user", {"user_id": LONG_ID},
         ["user_id", "256 characters"]),
]


def sessions_state(db):
    return db.execute("select id, message_count, last_activity_at from sessionlog.sessions"
                      " order by id").fetchall()


@pytest.fixture(scope="module")
def seeded(pg_server) -> Iterator[psycopg.Connection]:
    """One database for the whole module (every case writes nothing, and
    checks that it did not), migrated and seeded with one user with one
    session ('existing') holding one message; its last_activity_at is in the
    past, so that any write would move it."""
    name = f"sessionlog_bad_input_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        sessionlog.migrate(pg_server.dsn(name))
        with psycopg.connect(pg_server.dsn(name), autocommit=True, row_factory=dict_row) as db:
            call_one(db, "log_message", user_id="u1", session_id="existing", role="user",
                     content="first")
            db.execute("update sessionlog.sessions set last_activity_at = '2000-01-01'")
            yield db
    finally:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def test_there_are_enough_distinct_cases():
    assert len({case.id for case in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_argument_is_refused_and_nothing_is_written(seeded, case):
    db = seeded
    counts, sessions = table_counts(db), sessions_state(db)
    with raises_sqlstate(case.sqlstate, names=case.names):
        call(db, case.fn, **case.args)
    assert table_counts(db) == counts
    assert sessions_state(db) == sessions


def test_a_bad_element_aborts_the_whole_batch(db):
    call_one(db, "log_message", user_id="u1", session_id="existing", role="user", content="first")
    counts = table_counts(db)
    good = [{"user_id": "u1", "session_id": "existing", "role": "user", "content": str(i)}
            for i in range(3)]
    with raises_sqlstate("22023", names=["messages[3]"]):
        call(db, "log_messages", messages=good + [{"user_id": "u1", "session_id": "existing",
                                                   "role": "user", "content": None}])
    assert table_counts(db) == counts
    # The good elements were not written: written now, they take positions 2 to 4.
    assert [r["position"] for r in call(db, "log_messages", messages=good)] == [2, 3, 4]
