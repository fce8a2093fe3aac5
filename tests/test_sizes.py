"""Sizes are bounded (DESIGN.md), and the shim refuses before sending: an
oversized value, a NUL byte or a lone surrogate is InvalidArgument with
SQLSTATE 22023 naming the argument, and no connection was used (sync, async,
Supabase adapter alike: one rule set in _calls)."""

from __future__ import annotations

import re
import time
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from sessionlog import AsyncSessionLog, InvalidArgument, SessionLog, SupabaseSessionLog
from sessionlog import _calls
from tests.helpers import call, table_counts

MiB = 1_048_576


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def message(**changes: Any) -> dict[str, Any]:
    return {"user_id": "u1", "session_id": "chat-1", "role": "user", "content": "hi"} | changes


# (method, arguments, the argument named in the message)
REFUSED = [
    ("log_message", message(content="x" * (MiB + 1)), "content"),
    ("log_message", message(content="a\x00b"), "content"),
    ("log_message", message(content="a\ud800b"), "content"),
    ("log_message", message(content="\udfff"), "content"),
    ("log_message", message(model="m" * 256), "model"),
    ("log_message", message(user_id="u" * 256), "user_id"),
    ("log_message", message(session_id="s" * 256), "session_id"),
    ("log_message", message(client_message_id="c" * 256), "client_message_id"),
    ("log_message", message(metadata={"big": "x" * MiB}), "metadata"),
    ("log_message", message(metadata=nested(101)), "metadata"),
    ("log_message", message(metadata={"k": "a\x00"}), "metadata"),
    ("log_message", message(metadata={"k\ud834": 1}), "metadata"),
    ("log_interaction", dict(user_id="u1", session_id="chat-1", prompt="p" * (MiB + 1),
                             response="r"), "prompt"),
    ("log_interaction", dict(user_id="u1", session_id="chat-1", prompt="p",
                             response="r\x00"), "response"),
    ("create_session", dict(user_id="u1", title="t" * 1001), "title"),
    ("store_behavioral_vector", dict(user_id="u1", session_id="chat-1", vector=[1.0],
                                     event_type="e" * 256), "event_type"),
    ("log_messages", dict(messages=[message()] * 10_001), "messages"),
    ("log_messages", dict(messages=[message(), message(content="x" * (MiB + 1))]),
     "messages[1].content"),
    ("log_messages", dict(messages=[message(), message(), message(role="a\ud800")]),
     "messages[2].role"),
    # 40 messages of 1 MiB each: every one within bounds, the batch over 32 MiB
    ("log_messages", dict(messages=[message(content="x" * MiB)] * 40), "messages"),
]
IDS = [f"{name}:{named}:{i}" for i, (name, _, named) in enumerate(REFUSED)]


def check_refusal(exc: InvalidArgument, named: str) -> None:
    assert exc.sqlstate == "22023"
    assert exc.message.startswith(f"invalid {named} "), exc.message
    assert exc.hint, exc


@pytest.mark.parametrize("name, args, named", REFUSED, ids=IDS)
def test_sync_client_refuses_before_using_a_connection(dsn, db, name, args, named):
    with ConnectionPool(dsn, min_size=1, open=True, kwargs={"autocommit": True}) as pool:
        pool.wait()
        log = SessionLog.from_pool(pool)
        started = time.monotonic()
        with pytest.raises(InvalidArgument) as raised:
            getattr(log, name)(**args)
        assert time.monotonic() - started < 2
        assert pool.get_stats().get("requests_num", 0) == 0  # never asked for a connection
    check_refusal(raised.value, named)
    assert db.execute("select count(*) as n from sessionlog.messages").fetchone()["n"] == 0
    assert db.execute("select count(*) as n from sessionlog.sessions").fetchone()["n"] == 0


@pytest.mark.parametrize("name, args, named", REFUSED[:4] + REFUSED[-2:], ids=IDS[:4] + IDS[-2:])
async def test_async_client_refuses_before_using_a_connection(dsn, name, args, named):
    pool = AsyncConnectionPool(dsn, min_size=1, open=False, kwargs={"autocommit": True})
    await pool.open(wait=True)
    try:
        with pytest.raises(InvalidArgument) as raised:
            await getattr(AsyncSessionLog.from_pool(pool), name)(**args)
        assert pool.get_stats().get("requests_num", 0) == 0
    finally:
        await pool.close()
    check_refusal(raised.value, named)


class RecordingClient:
    """A supabase-like client that records every rpc() it is asked for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def rpc(self, fn: str, params: dict[str, Any]) -> Any:
        self.calls.append(fn)
        raise AssertionError(f"rpc({fn}) was called")


@pytest.mark.parametrize("name, args, named", REFUSED, ids=IDS)
def test_supabase_adapter_refuses_before_calling_rpc(name, args, named):
    client = RecordingClient()
    with pytest.raises(InvalidArgument) as raised:
        getattr(SupabaseSessionLog(client), name)(**args)
    assert client.calls == []
    check_refusal(raised.value, named)


def test_a_300_mb_content_is_refused_at_once_without_a_copy():
    content = "x" * (300 * MiB)
    client = RecordingClient()
    started = time.monotonic()
    with pytest.raises(InvalidArgument, match="has 314572800 characters, at most 1048576"):
        SupabaseSessionLog(client).log_message(user_id="u1", session_id="s", role="user",
                                               content=content)
    assert time.monotonic() - started < 0.5 and client.calls == []


def test_a_200_mb_metadata_is_refused_without_walking_all_of_it():
    metadata = {f"k{i}": "v" * 1000 for i in range(200_000)}  # ~200 MB of strings
    started = time.monotonic()
    with pytest.raises(InvalidArgument, match="metadata"):
        _calls.check_sizes("log_message", {"metadata": metadata})
    assert time.monotonic() - started < 0.5


def test_values_at_the_limits_pass_the_shim():
    """Exactly at each bound is allowed: the shim never refuses what the
    server accepts."""
    _calls.check_sizes("log_message", message(
        content="x" * MiB, model="m" * 255, user_id="u" * 255, session_id="s" * 255,
        client_message_id="c" * 255, metadata=nested(100)))
    _calls.check_sizes("log_message", message(user_id="  " + "u" * 255 + "  "))  # trimmed
    _calls.check_sizes("create_session", {"user_id": "u", "title": "t" * 1000})
    _calls.check_sizes("log_messages", {"messages": [message()] * 10_000})
    _calls.check_sizes("log_message", message(metadata={"text": "x" * (MiB - 100)}))
    _calls.check_sizes("log_message", message(content="é😀 valid astral", metadata={"é": "😀"}))


def test_content_of_exactly_1_mib_is_stored(dsn, db):
    with SessionLog(dsn) as log:
        stored = log.log_message(user_id="u1", session_id="chat-1", role="user",
                                 content="é" * MiB)
    assert stored.position == 1
    assert db.execute("select char_length(content) as n from sessionlog.messages"
                      ).fetchone()["n"] == MiB


# Each way in for text of the 1 MiB bound, called in SQL (the shim's own check
# is not in the way): (function, arguments with the text, the argument named).
SERVER_TEXT_BOUNDS = [
    ("log_message", lambda text: message(content=text), "content"),
    ("log_interaction", lambda text: dict(user_id="u1", session_id="chat-1", prompt="p",
                                          response=text), "response"),
    ("log_messages", lambda text: dict(messages=[message(content=text)]),
     "messages[0].content"),
]


@pytest.mark.parametrize("fn, arguments, named", SERVER_TEXT_BOUNDS,
                         ids=[fn for fn, _, _ in SERVER_TEXT_BOUNDS])
def test_the_server_counts_characters_not_bytes_at_the_1_mib_bound(db, fn, arguments, named):
    """2 bytes a character: MiB characters (2 MiB of UTF-8) are stored, one
    more is 22023 naming the argument, with nothing written."""
    call(db, fn, **arguments("é" * MiB))
    stored = table_counts(db)
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match=rf"invalid {re.escape(named)} .*has 1048577 characters"):
        call(db, fn, **arguments("é" * (MiB + 1)))
    assert table_counts(db) == stored
    assert db.execute("select max(char_length(content)) as n from sessionlog.messages"
                      ).fetchone()["n"] == MiB
