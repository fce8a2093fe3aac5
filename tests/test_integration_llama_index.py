"""LlamaIndex's chat store in sessionlog (sessionlog.integrations.llama_index):
messages with every block type read back equal, over the sync, async and
Supabase clients; the same random operations give the same results as
LlamaIndex's SimpleChatStore; a chat engine with a mock LLM keeps the same
history as over SimpleChatStore; deleting a message that is not the last
is refused with a clear error; 8 concurrent writers lose nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sessionlog import AsyncSessionLog, SessionLog, SupabaseSessionLog

pytest.importorskip("llama_index.core", reason="the llama-index extra is not installed")

from llama_index.core.base.llms.types import (  # noqa: E402
    AudioBlock,
    CacheControl,
    CachePoint,
    CitableBlock,
    CitationBlock,
    DocumentBlock,
    ImageBlock,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    VideoBlock,
)
from llama_index.core.chat_engine import SimpleChatEngine  # noqa: E402
from llama_index.core.llms import ChatMessage, MessageRole, MockLLM  # noqa: E402
from llama_index.core.memory import ChatMemoryBuffer  # noqa: E402
from llama_index.core.storage.chat_store import SimpleChatStore  # noqa: E402

from sessionlog.integrations.llama_index import SessionLogChatStore, to_record  # noqa: E402
from tests.helpers import run_together, table_counts  # noqa: E402
from tests.test_integration_shared import (  # noqa: E402, F401
    ASYNC,
    IDS,
    JSON,
    TEXT,
    async_log,
    new_key,
    supabase_log,
    sync_log,
)


def every_kind() -> list[ChatMessage]:
    """A message of every role, and every block type LlamaIndex has."""
    return [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="developer", content="Cite sources."),
        ChatMessage(role="user", blocks=[
            TextBlock(text="Look at these:"), ImageBlock(image=b"\x89PNG\r\n", image_mimetype="image/png"),
            ImageBlock(url="https://example.org/a.png"), AudioBlock(audio=b"RIFF", format="wav"),
            VideoBlock(video=b"\x00\x00vid", video_mimetype="video/mp4"),
            DocumentBlock(data=b"%PDF-1.4", document_mimetype="application/pdf", title="doc")],
            additional_kwargs={"lang": "en"}),
        ChatMessage(role="assistant", blocks=[
            ThinkingBlock(content="the user wants a summary"),
            ToolCallBlock(tool_name="search", tool_kwargs={"q": "x"}, tool_call_id="t1")]),
        ChatMessage(role="tool", content="result", additional_kwargs={"tool_call_id": "t1"}),
        ChatMessage(role="function", content="legacy"),
        ChatMessage(role="chatbot", blocks=[
            CitableBlock(content=[TextBlock(text="cited")], source="s", title="t"),
            CitationBlock(cited_content=TextBlock(text="q"), source="s", title="t",
                          additional_location_info={"page": 3})]),
        ChatMessage(role="model", blocks=[CachePoint(cache_control=CacheControl(type="ephemeral"))]),
    ]


def test_every_message_kind_reads_back_equal(sync_log: SessionLog) -> None:
    store = SessionLogChatStore(user_id="u1", log=sync_log)
    key = new_key()
    store.set_messages(key, every_kind())
    assert store.get_messages(key) == every_kind()
    assert store.delete_last_message(key) == every_kind()[-1]
    assert store.delete_message(key, 6) == every_kind()[-2]
    assert store.get_keys() == [key]
    assert store.delete_messages(key) == every_kind()[:-2]
    assert store.get_keys() == []
    assert store.delete_messages(key) is None


@ASYNC
async def test_every_message_kind_reads_back_equal_async(async_log: AsyncSessionLog) -> None:
    store = SessionLogChatStore(user_id="u1", log=async_log)
    key = new_key()
    await store.aset_messages(key, every_kind())
    assert await store.aget_messages(key) == every_kind()
    assert await store.adelete_last_message(key) == every_kind()[-1]
    assert await store.adelete_message(key, -1) == every_kind()[-2]
    await store.async_add_message(key, every_kind()[0])
    assert await store.aget_keys() == [key]
    assert await store.adelete_messages(key) == every_kind()[:-2] + every_kind()[:1]
    assert await store.aget_keys() == []


def test_every_message_kind_reads_back_equal_over_supabase(
        supabase_log: SupabaseSessionLog) -> None:
    store = SessionLogChatStore(user_id="u1", log=supabase_log)
    key = new_key()
    store.set_messages(key, every_kind())
    assert store.get_messages(key) == every_kind()
    assert store.delete_last_message(key) == every_kind()[-1]
    assert store.get_keys() == [key]
    assert store.delete_messages(key) == every_kind()[:-1]


def test_stored_rows_are_readable_in_sql(sync_log: SessionLog) -> None:
    key = new_key()
    SessionLogChatStore(user_id="u1", log=sync_log).set_messages(key, every_kind())
    rows = sync_log.get_messages(session_id=key, user_id="u1")
    assert [(r.role, r.content) for r in rows] == [
        ("system", "Be brief."), ("system", "Cite sources."), ("user", "Look at these:"),
        ("assistant", ""), ("tool", "result"), ("tool", "legacy"), ("assistant", ""),
        ("assistant", ""),
    ]
    assert rows[0].metadata["llama_index"]["role"] == "system"


def test_messages_logged_by_other_means_read_as_text_messages(sync_log: SessionLog) -> None:
    key = new_key()
    sync_log.log_interaction(user_id="u1", session_id=key, prompt="hi", response="hello")
    store = SessionLogChatStore(user_id="u1", log=sync_log)
    assert store.get_messages(key) == [ChatMessage(role="user", content="hi"),
                                       ChatMessage(role="assistant", content="hello")]


def test_deleting_a_message_that_is_not_the_last_is_refused(
        sync_log: SessionLog, db: psycopg.Connection) -> None:
    store = SessionLogChatStore(user_id="u1", log=sync_log)
    key = new_key()
    store.set_messages(key, every_kind())
    before = table_counts(db)
    with pytest.raises(ValueError, match="no gap, so only the last one can be removed"):
        store.delete_message(key, 2)
    with pytest.raises(ValueError, match="appends only"):
        store.add_message(key, every_kind()[0], idx=0)
    assert table_counts(db) == before
    assert store.delete_message(key, 8) is None  # past the end, as SimpleChatStore
    assert store.delete_message(new_key(), 0) is None
    store.add_message(key, every_kind()[0], idx=8)  # the end is allowed
    assert store.get_messages(key) == every_kind() + every_kind()[:1]


def test_set_messages_replaces_and_an_empty_list_keeps_the_key(sync_log: SessionLog) -> None:
    store = SessionLogChatStore(user_id="u1", log=sync_log)
    key = new_key()
    store.set_messages(key, every_kind())
    store.set_messages(key, every_kind()[:2])
    assert store.get_messages(key) == every_kind()[:2]
    store.set_messages(key, [])
    assert store.get_messages(key) == []
    assert store.get_keys() == [key]
    assert store.delete_messages(key) == []


def test_roles_map_as_documented() -> None:
    roles = {r.value: to_record(ChatMessage(role=r, content="x"))["role"] for r in MessageRole}
    assert roles == {"system": "system", "developer": "system", "user": "user",
                     "assistant": "assistant", "chatbot": "assistant", "model": "assistant",
                     "function": "tool", "tool": "tool"}


# --- differential: the same operations as SimpleChatStore -----------------------

KWARGS = st.dictionaries(TEXT.filter(lambda k: k != "images"), JSON, max_size=3)
BLOCKS = st.lists(st.one_of(
    st.builds(TextBlock, text=TEXT),
    st.builds(ThinkingBlock, content=st.none() | TEXT),
    st.builds(ToolCallBlock, tool_name=TEXT, tool_call_id=st.none() | IDS,
              tool_kwargs=st.dictionaries(TEXT, JSON, max_size=2)),
    st.builds(ImageBlock, url=st.just("https://example.org/i.png"),
              image_mimetype=st.none() | st.just("image/png")),
    st.builds(ImageBlock, image=st.binary(min_size=1, max_size=12),
              image_mimetype=st.just("image/png")),
), max_size=3)
MESSAGES = st.builds(ChatMessage, role=st.sampled_from(list(MessageRole)), blocks=BLOCKS,
                     additional_kwargs=KWARGS)


def operations(keys: list[str]) -> st.SearchStrategy[list[Any]]:
    key = st.sampled_from(keys)
    return st.lists(st.one_of(
        st.tuples(st.just("set"), key, st.lists(MESSAGES, max_size=3)),
        st.tuples(st.just("add"), key, MESSAGES),
        st.tuples(st.just("get"), key),
        st.tuples(st.just("delete_messages"), key),
        st.tuples(st.just("delete_message"), key, st.integers(0, 4)),
        st.tuples(st.just("delete_last"), key),
    ), max_size=10)


DIFFERENTIAL = settings(max_examples=40, deadline=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])


def _reference_step(reference: SimpleChatStore, op: tuple[Any, ...]) -> Any:
    name, key = op[0], op[1]
    if name == "set":
        return reference.set_messages(key, list(op[2]))
    if name == "add":
        return reference.add_message(key, op[2])
    if name == "get":
        return list(reference.get_messages(key))
    if name == "delete_messages":
        return reference.delete_messages(key)
    if name == "delete_message":
        return reference.delete_message(key, op[2])
    if key in reference.store and not reference.store[key]:
        return None  # SimpleChatStore raises IndexError on an empty chat; None is the contract
    return reference.delete_last_message(key)


def _is_refused(reference: SimpleChatStore, op: tuple[Any, ...]) -> bool:
    """delete_message of an index that exists and is not the last."""
    if op[0] != "delete_message":
        return False
    length = len(reference.store.get(op[1], []))
    return op[2] < length - 1


@DIFFERENTIAL
@given(data=st.data())
def test_same_results_as_simple_chat_store(sync_log: SessionLog, data: st.DataObject) -> None:
    user = new_key()  # a user of its own: get_keys lists only this example's chats
    keys = [f"chat-a-{user}", f"chat-b-{user}", str(uuid.uuid4())]  # a key may be a uuid
    ours = SessionLogChatStore(user_id=user, log=sync_log)
    reference = SimpleChatStore()
    for op in data.draw(operations(keys)):
        if _is_refused(reference, op):
            with pytest.raises(ValueError):
                ours.delete_message(op[1], op[2])
            continue
        method = {"set": ours.set_messages, "add": ours.add_message, "get": ours.get_messages,
                  "delete_messages": ours.delete_messages, "delete_message": ours.delete_message,
                  "delete_last": ours.delete_last_message}[op[0]]
        assert method(*op[1:]) == _reference_step(reference, op)
        assert sorted(ours.get_keys()) == sorted(reference.get_keys())
        for key in keys:
            assert ours.get_messages(key) == reference.get_messages(key)


@ASYNC
@DIFFERENTIAL
@given(data=st.data())
async def test_same_results_as_simple_chat_store_async(async_log: AsyncSessionLog,
                                                       data: st.DataObject) -> None:
    user = new_key()
    keys = [f"chat-a-{user}", f"chat-b-{user}"]
    ours = SessionLogChatStore(user_id=user, log=async_log)
    reference = SimpleChatStore()
    for op in data.draw(operations(keys)):
        if _is_refused(reference, op):
            with pytest.raises(ValueError):
                await ours.adelete_message(op[1], op[2])
            continue
        method = {"set": ours.aset_messages, "add": ours.async_add_message,
                  "get": ours.aget_messages, "delete_messages": ours.adelete_messages,
                  "delete_message": ours.adelete_message,
                  "delete_last": ours.adelete_last_message}[op[0]]
        assert await method(*op[1:]) == _reference_step(reference, op)
        assert sorted(await ours.aget_keys()) == sorted(reference.get_keys())
        for key in keys:
            assert await ours.aget_messages(key) == reference.get_messages(key)


# --- end to end: a chat engine with a mock LLM ------------------------------------

def _chat(store: Any, key: str) -> list[str]:
    memory = ChatMemoryBuffer.from_defaults(chat_store=store, chat_store_key=key,
                                            token_limit=100_000)
    engine = SimpleChatEngine.from_defaults(llm=MockLLM(max_tokens=8), memory=memory,
                                            system_prompt="You are helpful.")
    return [str(engine.chat(question)) for question in ("Hi", "What is sessionlog?", "Thanks")]


def test_a_chat_engine_keeps_the_same_history_as_over_simple_chat_store(
        sync_log: SessionLog) -> None:
    key = new_key()
    reference = SimpleChatStore()
    ours = SessionLogChatStore(user_id="u1", log=sync_log)
    assert _chat(ours, key) == _chat(reference, key)
    assert len(reference.get_messages(key)) == 6
    assert ours.get_messages(key) == reference.get_messages(key)


# --- concurrency: 8 writers, 200 messages each, one brand-new key ------------------

WRITERS, PER_WRITER = 8, 200


def test_eight_concurrent_writers_lose_and_duplicate_nothing(sync_log: SessionLog) -> None:
    store = SessionLogChatStore(user_id="u1", log=sync_log)
    key = new_key()

    def writer(w: int) -> int:
        for i in range(PER_WRITER):
            store.add_message(key, ChatMessage(role="user", content=f"{w}:{i}"))
        return w

    assert run_together([lambda w=w: writer(w) for w in range(WRITERS)],
                        timeout=120) == list(range(WRITERS))
    stored = [m.content for m in store.get_messages(key)]
    assert len(stored) == len(set(stored)) == WRITERS * PER_WRITER
    for w in range(WRITERS):
        assert [s for s in stored if s.startswith(f"{w}:")] == [
            f"{w}:{i}" for i in range(PER_WRITER)]


@ASYNC
async def test_eight_concurrent_async_writers_lose_nothing(async_log: AsyncSessionLog) -> None:
    store = SessionLogChatStore(user_id="u1", log=async_log)
    key = new_key()

    async def writer(w: int) -> None:
        for i in range(PER_WRITER):
            await store.async_add_message(key, ChatMessage(role="user", content=f"{w}:{i}"))

    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    stored = [m.content for m in await store.aget_messages(key)]
    assert sorted(stored) == sorted(f"{w}:{i}" for w in range(WRITERS) for i in range(PER_WRITER))
