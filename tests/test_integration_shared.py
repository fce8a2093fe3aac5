"""What the three framework adapters share (sessionlog.integrations._conversation):
the clients they accept, one atomic batch per add, tail reads and paging;
and the fixtures the framework test files import from here: a sync, an
async and a Supabase (PostgREST stand-in) client on the test's database,
JSON and text strategies that PostgreSQL stores unchanged."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import strategies as st
from sessionlog import AsyncSessionLog, InvalidArgument, SessionLog, SupabaseSessionLog
from sessionlog.integrations import _conversation as conv

from tests.helpers import table_counts
from tests.postgrest_stub import PostgrestStub, sign_jwt

SERVICE_KEY = sign_jwt({"role": "service_role", "iss": "supabase"})
ANON_KEY = sign_jwt({"role": "anon", "iss": "supabase"})

# supabase-py 2.34 warns about its own use of postgrest's deprecated options.

# Async tests share the session's event loop with the async fixtures (pyproject
# sets the fixtures' loop scope to "session"), where the async pools live.
ASYNC = pytest.mark.asyncio(loop_scope="session")


# --- fixtures ----------------------------------------------------------------

@pytest.fixture
def sync_log(dsn: str) -> Iterator[SessionLog]:
    """A SessionLog with a pool of 8 connections (8 concurrent writers)."""
    with SessionLog(dsn, min_size=1, max_size=8) as log:
        yield log


@pytest.fixture
async def async_log(dsn: str) -> AsyncIterator[AsyncSessionLog]:
    log = await AsyncSessionLog.connect(dsn, min_size=1, max_size=8)
    try:
        yield log
    finally:
        await log.close()


@pytest.fixture
def supabase_log(dsn: str) -> Iterator[SupabaseSessionLog]:
    """SupabaseSessionLog over the real supabase-py client and the PostgREST
    stand-in, with the service_role key (a trusted backend)."""
    from supabase import create_client

    with PostgrestStub(dsn) as api:
        client = create_client(api.url, SERVICE_KEY)
        try:
            yield SupabaseSessionLog(client)
        finally:
            client.postgrest.aclose()


@pytest.fixture
def supabase_as_user(dsn: str) -> Iterator[Any]:
    """``supabase_as_user("alice")``: SupabaseSessionLog as a signed-in
    user (the anon key plus the user's JWT), as a browser has it."""
    from supabase import create_client

    clients = []
    with PostgrestStub(dsn) as api:

        def make(sub: str) -> SupabaseSessionLog:
            client = create_client(api.url, ANON_KEY)
            client.postgrest.auth(sign_jwt({"role": "authenticated", "sub": sub,
                                            "aud": "authenticated"}))
            clients.append(client)
            return SupabaseSessionLog(client)

        try:
            yield make
        finally:
            for client in clients:
                client.postgrest.aclose()


def new_key() -> str:
    """A session token no other example uses."""
    return f"chat-{uuid.uuid4().hex[:12]}"


# --- strategies: values PostgreSQL's text and jsonb keep as they are ---------

#: No NUL (PostgreSQL text and jsonb cannot hold it) and no lone surrogate;
#: floats below 1e16 in magnitude: jsonb keeps numbers as numeric, which prints
#: 1e20 as 100000000000000000000, read back as an int (docs/integrations.md).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=20)
SCALARS = (st.none() | st.booleans() | st.integers(-2**63, 2**63)
           | st.floats(-1e15, 1e15, allow_nan=False) | TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
JSON_OBJECTS = st.dictionaries(TEXT, JSON, max_size=3)
IDS = st.text("abcdef0123456789-_", min_size=1, max_size=12)


# --- the shared layer --------------------------------------------------------

def test_a_log_must_be_a_client_or_a_dsn() -> None:
    with pytest.raises(TypeError, match="SessionLog, AsyncSessionLog, SupabaseSessionLog"):
        conv.Clients(42, "Test")


@ASYNC
async def test_an_async_client_refuses_the_sync_side_with_a_clear_error(
        async_log: AsyncSessionLog) -> None:
    clients = conv.Clients(async_log, "Test")
    with pytest.raises(TypeError, match="async methods"):
        clients.sync()
    assert await clients.arun(conv.read(new_key(), "u1")) == []


def test_a_dsn_opens_its_own_pools_and_closes_them(dsn: str) -> None:
    clients = conv.Clients(dsn, "Test")
    key = new_key()
    clients.run(conv.append(key, "u1", [{"role": "user", "content": "hi"}]))

    async def both() -> list[Any]:
        try:
            return await clients.arun(conv.read(key, "u1"))
        finally:
            await clients.aclose()

    assert [m.content for m in asyncio.run(both())] == ["hi"]
    assert clients._sync is None and clients._async is None


def test_one_add_is_one_all_or_nothing_batch(sync_log: SessionLog, db: psycopg.Connection) -> None:
    clients = conv.Clients(sync_log, "Test")
    key = new_key()
    before = table_counts(db)
    records = [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]
    with pytest.raises(InvalidArgument):
        clients.run(conv.append(key, "u1", records))
    assert table_counts(db) == before


def test_a_batch_over_log_messages_limits_is_split_and_each_part_is_atomic(
        sync_log: SessionLog, monkeypatch: pytest.MonkeyPatch) -> None:
    clients = conv.Clients(sync_log, "Test")
    key = new_key()
    records = [{"role": "user", "content": f"{i}" + "x" * 100} for i in range(25)]
    monkeypatch.setattr(conv, "MAX_BATCH_ITEMS", 10)
    logged = clients.run(conv.append(key, "u1", records))
    assert [m.position for m in logged] == list(range(1, 26))
    # Over the byte limit the server refuses the batch (nothing written),
    # and it goes again in parts under the limit.
    monkeypatch.setattr(conv, "MAX_BATCH_BYTES", 1000)
    assert all(len(p) <= 7 for p in conv._by_size(records))
    calls = []
    real = sync_log.log_messages

    def refusing(*, messages: list[Any]) -> Any:
        calls.append(len(messages))
        if len(messages) > 7:
            raise InvalidArgument("messages: batch too large", sqlstate="22023")
        return real(messages=messages)

    monkeypatch.setattr(sync_log, "log_messages", refusing)
    logged = clients.run(conv.append(key, "u1", records))
    assert [m.position for m in logged] == list(range(26, 51))
    assert calls[0] == 10  # whole first, then in parts
    assert sum(n for n in calls if n <= 7) == 25
    assert [m.content for m in clients.run(conv.read(key, "u1"))] == [
        r["content"] for r in records] * 2


def test_a_bad_batch_that_fits_the_limits_is_not_retried(
        sync_log: SessionLog, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = sync_log.log_messages
    monkeypatch.setattr(sync_log, "log_messages",
                        lambda *, messages: calls.append(1) or real(messages=messages))
    with pytest.raises(InvalidArgument, match="role"):
        conv.Clients(sync_log, "Test").run(conv.append(new_key(), "u1", [
            {"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]))
    assert calls == [1]


def test_reads_page_through_sessions_longer_than_a_page(
        sync_log: SessionLog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conv, "MAX_PAGE", 7)
    clients = conv.Clients(sync_log, "Test")
    key = new_key()
    clients.run(conv.append(key, "u1", [{"role": "user", "content": str(i)} for i in range(30)]))
    everything = clients.run(conv.read(key, "u1"))
    assert [m.content for m in everything] == [str(i) for i in range(30)]
    assert [m.position for m in everything] == list(range(1, 31))


def test_tail_reads_page_backwards(sync_log: SessionLog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conv, "MAX_PAGE", 7)
    clients = conv.Clients(sync_log, "Test")
    key = new_key()
    clients.run(conv.append(key, "u1", [{"role": "user", "content": str(i)} for i in range(30)]))
    for limit in (0, 1, 6, 7, 8, 14, 15, 29, 30, 31, 100):
        tail = clients.run(conv.read(key, "u1", limit))
        assert [m.content for m in tail] == [str(i) for i in range(30)][max(0, 30 - limit):][:limit]
    assert clients.run(conv.length(key, "u1")) == 30
    assert clients.run(conv.length(new_key(), "u1")) == 0


def test_session_keys_page_and_name_sessions_as_they_were_addressed(
        sync_log: SessionLog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conv, "MAX_PAGE", 3)
    clients = conv.Clients(sync_log, "Test")
    keys = [new_key() for _ in range(7)] + [str(uuid.uuid4())]
    for key in keys:
        clients.run(conv.create(key, "u-keys"))
    assert sorted(clients.run(conv.session_keys("u-keys"))) == sorted(keys)
    assert clients.run(conv.session_keys("nobody")) == []
