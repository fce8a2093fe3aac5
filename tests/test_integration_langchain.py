"""LangChain's chat history in sessionlog (sessionlog.integrations.langchain):
every message kind reads back equal to what was written, over the sync,
async and Supabase clients; the same random operations give the same
history as LangChain's own InMemoryChatMessageHistory; a chat loop with a
fake model keeps the same history as with LangChain's store; 8 concurrent
writers lose and duplicate nothing."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sessionlog import AsyncSessionLog, InvalidArgument, SessionLog, SupabaseSessionLog

pytest.importorskip("langchain_core", reason="the langchain extra is not installed")

from langchain_core.chat_history import InMemoryChatMessageHistory  # noqa: E402
from langchain_core.language_models.fake_chat_models import (  # noqa: E402
    FakeMessagesListChatModel,
)
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder  # noqa: E402
from langchain_core.runnables.history import RunnableWithMessageHistory  # noqa: E402

from sessionlog.integrations.langchain import (  # noqa: E402
    SessionLogChatMessageHistory,
    message_role,
)
from tests.helpers import run_together, table_counts  # noqa: E402
from tests.test_integration_shared import (  # noqa: E402, F401
    ASYNC,
    IDS,
    JSON,
    JSON_OBJECTS,
    TEXT,
    async_log,
    new_key,
    supabase_as_user,
    supabase_log,
    sync_log,
)

# InMemoryChatMessageHistory is marked deprecated for 2.0; it is the reference.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def every_kind() -> list[BaseMessage]:
    """One message of every kind LangChain has, with the optional parts set."""
    return [
        SystemMessage("Be brief.", id="m0"),
        HumanMessage("What is 2+2?", name="alice", additional_kwargs={"lang": "en"}),
        HumanMessage([{"type": "text", "text": "and this?"},
                      {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}}]),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 2, "b": 2}, "id": "call-1",
                                   "type": "tool_call"}],
                  usage_metadata={"input_tokens": 12, "output_tokens": 7, "total_tokens": 19},
                  response_metadata={"model_name": "gpt-test", "finish_reason": "tool_calls"}),
        ToolMessage("4", tool_call_id="call-1", artifact={"raw": [4]}, status="success"),
        AIMessage("4.", invalid_tool_calls=[{"name": "x", "args": "{", "id": "c2",
                                             "error": "bad json", "type": "invalid_tool_call"}]),
        FunctionMessage(name="legacy_fn", content="done"),
        ChatMessage(role="critic", content="too short"),
        ChatMessage(role="assistant", content="noted"),
        AIMessageChunk(content="stream", tool_call_chunks=[
            {"name": "f", "args": '{"a"', "id": "c3", "index": 0, "type": "tool_call_chunk"}]),
        HumanMessageChunk(content="chunk"),
    ]


# --- round trip --------------------------------------------------------------

def test_every_message_kind_reads_back_equal(sync_log: SessionLog) -> None:
    history = SessionLogChatMessageHistory(new_key(), user_id="u1", log=sync_log)
    history.add_messages(every_kind())
    assert history.messages == every_kind()


@ASYNC
async def test_every_message_kind_reads_back_equal_async(async_log: AsyncSessionLog) -> None:
    history = SessionLogChatMessageHistory(new_key(), user_id="u1", log=async_log)
    await history.aadd_messages(every_kind())
    assert await history.aget_messages() == every_kind()
    await history.aclear()
    assert await history.aget_messages() == []


def test_every_message_kind_reads_back_equal_over_supabase(
        supabase_log: SupabaseSessionLog) -> None:
    history = SessionLogChatMessageHistory(new_key(), user_id="u1", log=supabase_log)
    history.add_messages(every_kind())
    assert history.messages == every_kind()
    history.add_message(HumanMessage("one more"))
    history.clear()
    assert history.messages == []


def test_a_signed_in_user_keeps_a_history_of_their_own_over_supabase(
        supabase_as_user: Any) -> None:
    key = new_key()
    alice = SessionLogChatMessageHistory(key, user_id=None, log=supabase_as_user("alice"))
    bob = SessionLogChatMessageHistory(key, user_id=None, log=supabase_as_user("bob"))
    alice.add_messages(every_kind())
    bob.add_user_message("mine")
    assert alice.messages == every_kind()  # the user is the JWT subject
    assert bob.messages == [HumanMessage("mine")]  # the same token, another user's session
    bob.clear()
    assert alice.messages == every_kind()


def test_a_dsn_serves_both_sides(dsn: str) -> None:
    history = SessionLogChatMessageHistory(new_key(), user_id="u1", log=dsn)
    history.add_user_message("hi")

    async def read() -> list[BaseMessage]:
        try:
            await history.aadd_messages([AIMessage("hello")])
            return await history.aget_messages()
        finally:
            await history.aclose()

    assert asyncio.run(read()) == [HumanMessage("hi"), AIMessage("hello")]


def test_stored_rows_are_readable_in_sql(sync_log: SessionLog) -> None:
    key = new_key()
    SessionLogChatMessageHistory(key, user_id="u1", log=sync_log).add_messages(every_kind())
    rows = sync_log.get_messages(session_id=key, user_id="u1")
    assert [(r.role, r.content) for r in rows] == [
        ("system", "Be brief."), ("user", "What is 2+2?"), ("user", "and this?"),
        ("assistant", ""), ("tool", "4"), ("assistant", "4."), ("tool", "done"),
        ("user", "too short"), ("assistant", "noted"), ("assistant", "stream"), ("user", "chunk"),
    ]
    assert (rows[3].model, rows[3].tokens) == ("gpt-test", 19)
    assert all(r.model is None and r.tokens is None for i, r in enumerate(rows) if i != 3)
    assert rows[1].metadata["langchain"]["type"] == "human"


def test_messages_logged_by_other_means_read_as_plain_messages(sync_log: SessionLog) -> None:
    key = new_key()
    sync_log.log_interaction(user_id="u1", session_id=key, prompt="2+2?", response="4")
    sync_log.log_message(user_id="u1", session_id=key, role="system", content="s")
    history = SessionLogChatMessageHistory(key, user_id="u1", log=sync_log)
    assert history.messages == [HumanMessage("2+2?"), AIMessage("4"), SystemMessage("s")]


def test_a_bad_message_writes_nothing(sync_log: SessionLog, db: psycopg.Connection) -> None:
    history = SessionLogChatMessageHistory(new_key(), user_id="u1", log=sync_log)
    before = table_counts(db)
    # Refused by the shim before sending, or by PostgreSQL (22P05): named either way.
    with pytest.raises(InvalidArgument, match="NUL") as raised:
        history.add_messages([HumanMessage("fine"), HumanMessage("nul \x00 inside")])
    assert raised.value.sqlstate.startswith("22")
    assert table_counts(db) == before


@pytest.mark.parametrize(("message", "role"), [
    (ChatMessage(role=" Developer ", content=""), "system"),
    (ChatMessage(role="human", content=""), "user"),
    (ChatMessage(role="narrator", content=""), "user"),
    (AIMessageChunk(content=""), "assistant"),
])
def test_roles_map_as_documented(message: BaseMessage, role: str) -> None:
    assert message_role(message) == role


# --- differential: the same operations as InMemoryChatMessageHistory ----------

CONTENT = TEXT | st.lists(
    st.fixed_dictionaries({"type": st.just("text"), "text": TEXT})
    | st.fixed_dictionaries({"type": st.just("image_url"),
                             "image_url": st.fixed_dictionaries({"url": TEXT})}), max_size=2)
TOOL_CALLS = st.lists(st.builds(
    lambda name, args, id_: {"name": name, "args": args, "id": id_, "type": "tool_call"},
    TEXT, JSON_OBJECTS, IDS), max_size=2)
USAGE = st.none() | st.builds(
    lambda i, o: {"input_tokens": i, "output_tokens": o, "total_tokens": i + o},
    st.integers(0, 2**31), st.integers(0, 2**31))

MESSAGES = st.one_of(
    st.builds(HumanMessage, content=CONTENT, additional_kwargs=JSON_OBJECTS,
              name=st.none() | TEXT, id=st.none() | IDS),
    st.builds(SystemMessage, content=CONTENT),
    st.builds(AIMessage, content=CONTENT, tool_calls=TOOL_CALLS, usage_metadata=USAGE,
              response_metadata=st.fixed_dictionaries({"model_name": TEXT})),
    st.builds(ToolMessage, content=CONTENT, tool_call_id=IDS, artifact=JSON,
              status=st.sampled_from(["success", "error"])),
    st.builds(FunctionMessage, content=TEXT, name=TEXT),
    st.builds(ChatMessage, content=CONTENT, role=TEXT),
    st.builds(AIMessageChunk, content=TEXT),
)
OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.lists(MESSAGES, max_size=4)),
    st.tuples(st.just("clear")),
    st.tuples(st.just("read")),
), max_size=8)

DIFFERENTIAL = settings(max_examples=40, deadline=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])


def _reference() -> InMemoryChatMessageHistory:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return InMemoryChatMessageHistory()


@DIFFERENTIAL
@given(operations=OPERATIONS)
def test_same_history_as_in_memory_history(sync_log: SessionLog, operations: list[Any]) -> None:
    ours = SessionLogChatMessageHistory(new_key(), user_id="u1", log=sync_log)
    reference = _reference()
    for op in operations:
        if op[0] == "add":
            ours.add_messages(op[1])
            reference.add_messages(op[1])
        elif op[0] == "clear":
            ours.clear()
            reference.clear()
        assert ours.messages == reference.messages


@ASYNC
@DIFFERENTIAL
@given(operations=OPERATIONS)
async def test_same_history_as_in_memory_history_async(
        async_log: AsyncSessionLog, operations: list[Any]) -> None:
    ours = SessionLogChatMessageHistory(new_key(), user_id="u1", log=async_log)
    reference = _reference()
    for op in operations:
        if op[0] == "add":
            await ours.aadd_messages(op[1])
            await reference.aadd_messages(op[1])
        elif op[0] == "clear":
            await ours.aclear()
            await reference.aclear()
        assert await ours.aget_messages() == await reference.aget_messages()


# --- end to end: a chat loop with a fake model ----------------------------------

def _replies() -> list[BaseMessage]:
    return [
        AIMessage("Hello! How can I help?", usage_metadata={
            "input_tokens": 5, "output_tokens": 6, "total_tokens": 11},
            response_metadata={"model_name": "fake"}),
        AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Oslo"},
                                   "id": "call-9", "type": "tool_call"}]),
        AIMessage("It is sunny in Oslo."),
    ]


def _chat(get_history: Any) -> RunnableWithMessageHistory:
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You are a helpful assistant."),
        MessagesPlaceholder("history"),
        ("human", "{question}"),
    ])
    chain = prompt | FakeMessagesListChatModel(responses=_replies())
    return RunnableWithMessageHistory(chain, get_history, input_messages_key="question",
                                      history_messages_key="history")


QUESTIONS = ["Hi", "Weather in Oslo?", "Thanks, and now?"]


def without_run_ids(messages: list[BaseMessage]) -> list[BaseMessage]:
    """The messages without the id LangChain gives each model reply
    (``lc_run--<run uuid>``): two runs of the same chat differ only there."""
    return [m.model_copy(update={"id": None}) if (m.id or "").startswith("lc_run-") else m
            for m in messages]


def test_a_chat_loop_keeps_the_same_history_as_langchains_store(sync_log: SessionLog) -> None:
    reference = _reference()
    key = new_key()
    ours = SessionLogChatMessageHistory(key, user_id="u1", log=sync_log)
    for history in (reference, ours):
        chat = _chat(lambda session_id, h=history: h)
        for question in QUESTIONS:
            chat.invoke({"question": question}, config={"configurable": {"session_id": key}})
    assert len(reference.messages) == 6
    stored = SessionLogChatMessageHistory(key, user_id="u1", log=sync_log).messages
    assert without_run_ids(stored) == without_run_ids(reference.messages)
    assert stored[1].id.startswith("lc_run-")  # kept as the run gave it


@ASYNC
async def test_an_async_chat_loop_keeps_the_same_history(async_log: AsyncSessionLog) -> None:
    reference = _reference()
    key = new_key()
    ours = SessionLogChatMessageHistory(key, user_id="u1", log=async_log)
    for history in (reference, ours):
        chat = _chat(lambda session_id, h=history: h)
        for question in QUESTIONS:
            await chat.ainvoke({"question": question},
                               config={"configurable": {"session_id": key}})
    assert without_run_ids(await ours.aget_messages()) == without_run_ids(reference.messages)


# --- concurrency: 8 writers, 200 messages each, one brand-new session ------------

WRITERS, ITEMS = 8, 200


def test_eight_concurrent_writers_lose_and_duplicate_nothing(sync_log: SessionLog) -> None:
    history = SessionLogChatMessageHistory(new_key(), user_id="u1", log=sync_log)

    def writer(w: int) -> int:
        for i in range(ITEMS):
            history.add_message(HumanMessage(f"{w}:{i}"))
        return w

    results = run_together([lambda w=w: writer(w) for w in range(WRITERS)], timeout=120)
    assert results == list(range(WRITERS)), results  # no writer raised
    stored = [m.content for m in history.messages]
    assert len(stored) == WRITERS * ITEMS
    assert len(set(stored)) == WRITERS * ITEMS
    for w in range(WRITERS):  # each writer's messages in its own order
        assert [s for s in stored if s.startswith(f"{w}:")] == [f"{w}:{i}" for i in range(ITEMS)]


@ASYNC
async def test_eight_concurrent_async_writers_lose_and_duplicate_nothing(
        async_log: AsyncSessionLog) -> None:
    history = SessionLogChatMessageHistory(new_key(), user_id="u1", log=async_log)

    async def writer(w: int) -> None:
        for i in range(ITEMS):
            await history.aadd_messages([HumanMessage(f"{w}:{i}")])

    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    stored = [m.content for m in await history.aget_messages()]
    assert sorted(stored) == sorted(f"{w}:{i}" for w in range(WRITERS) for i in range(ITEMS))
