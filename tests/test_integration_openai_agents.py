"""The OpenAI Agents SDK's Session in sessionlog
(sessionlog.integrations.openai_agents): items of every kind read back as
they were written, over the async, sync and Supabase clients; the same
random operations give the same results as the SDK's SQLiteSession(":memory:");
a Runner with a scripted model keeps the same history as with SQLiteSession;
8 concurrent writers into one brand-new session lose and duplicate nothing
(the SDK's SQLAlchemySession loses writes there: openai-agents-python #2722)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sessionlog import AsyncSessionLog, InvalidArgument, SessionLog, SupabaseSessionLog

pytest.importorskip("agents", reason="the openai-agents extra is not installed")

from agents import Agent, Runner, SQLiteSession, function_tool  # noqa: E402
from agents.memory import Session, SessionSettings  # noqa: E402
from agents.testing import ScriptedModel, assistant_message, function_call  # noqa: E402

from sessionlog.integrations.openai_agents import SessionLogSession, item_role  # noqa: E402
from tests.helpers import table_counts  # noqa: E402
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

# Every test here is async, on the session loop where the async pools live.
pytestmark = ASYNC


def every_kind() -> list[dict[str, Any]]:
    """One input item of each kind a run produces or a caller sends."""
    return [
        {"role": "developer", "content": "Answer in French."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What's the weather in Paris?"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "and a picture:"},
            {"type": "input_image", "image_url": "https://example.org/p.png", "detail": "auto"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [
            {"type": "summary_text", "text": "Need the weather tool."}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "weather",
         "arguments": '{"city":"Paris"}', "status": "completed"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21°C"},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Il fait beau.", "annotations": [],
                      "logprobs": []},
                     {"type": "refusal", "refusal": "No more."}]},
        {"type": "computer_call_output", "call_id": "cc_1",
         "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,AA=="}},
        {"type": "mcp_approval_response", "approval_request_id": "ap_1", "approve": True},
        {"type": "item_reference", "id": "msg_0"},
    ]


async def test_the_adapter_is_an_sdk_session(async_log: AsyncSessionLog) -> None:
    assert isinstance(SessionLogSession("s", user_id="u1", log=async_log), Session)


async def test_every_item_kind_reads_back_as_written(async_log: AsyncSessionLog) -> None:
    session = SessionLogSession(new_key(), user_id="u1", log=async_log)
    await session.add_items(every_kind())
    assert await session.get_items() == every_kind()
    assert await session.get_items(limit=3) == every_kind()[-3:]
    assert await session.pop_item() == every_kind()[-1]
    await session.clear_session()
    assert await session.get_items() == []
    assert await session.pop_item() is None


async def test_over_a_sync_client(sync_log: SessionLog) -> None:
    session = SessionLogSession(new_key(), user_id="u1", log=sync_log)
    await session.add_items(every_kind())
    assert await session.get_items() == every_kind()
    assert await session.pop_item() == every_kind()[-1]


async def test_over_supabase(supabase_log: SupabaseSessionLog) -> None:
    session = SessionLogSession(new_key(), user_id="u1", log=supabase_log)
    await session.add_items(every_kind())
    assert await session.get_items() == every_kind()
    assert await session.get_items(limit=2) == every_kind()[-2:]
    assert await session.pop_item() == every_kind()[-1]
    await session.clear_session()
    assert await session.get_items() == []


async def test_stored_rows_are_readable_in_sql(async_log: AsyncSessionLog) -> None:
    key = new_key()
    await SessionLogSession(key, user_id="u1", log=async_log).add_items(every_kind())
    rows = await async_log.get_messages(session_id=key, user_id="u1")
    assert [(r.role, r.content) for r in rows] == [
        ("system", "Answer in French."), ("system", "Be brief."),
        ("user", "What's the weather in Paris?"), ("user", "and a picture:"),
        ("assistant", "Need the weather tool."), ("assistant", 'weather({"city":"Paris"})'),
        ("tool", "sunny, 21°C"), ("assistant", "Il fait beau.\nNo more."), ("tool", ""),
        ("user", ""), ("assistant", ""),
    ]
    assert rows[0].metadata == {"openai_agents": every_kind()[0]}


async def test_messages_logged_by_other_means_read_as_easy_messages(
        async_log: AsyncSessionLog) -> None:
    key = new_key()
    await async_log.log_interaction(user_id="u1", session_id=key, prompt="hi", response="hello")
    session = SessionLogSession(key, user_id="u1", log=async_log)
    assert await session.get_items() == [{"role": "user", "content": "hi"},
                                         {"role": "assistant", "content": "hello"}]


async def test_session_settings_limit_is_the_default_limit(async_log: AsyncSessionLog) -> None:
    session = SessionLogSession(new_key(), user_id="u1", log=async_log,
                                session_settings=SessionSettings(limit=2))
    await session.add_items(every_kind())
    assert await session.get_items() == every_kind()[-2:]
    assert await session.get_items(limit=4) == every_kind()[-4:]


async def test_a_bad_item_writes_nothing(async_log: AsyncSessionLog,
                                         db: psycopg.Connection) -> None:
    session = SessionLogSession(new_key(), user_id="u1", log=async_log)
    before = table_counts(db)
    # Refused by the shim before sending, or by PostgreSQL (22P05): named either way.
    with pytest.raises(InvalidArgument, match="NUL"):
        await session.add_items([{"role": "user", "content": "ok"},
                                 {"role": "user", "content": "\x00"}])
    assert table_counts(db) == before


@pytest.mark.parametrize(("item", "role"), [
    ({"role": "developer", "content": ""}, "system"),
    ({"type": "function_call_output", "call_id": "c", "output": ""}, "tool"),
    ({"type": "local_shell_call_output", "id": "c", "output": ""}, "tool"),
    ({"type": "function_call", "call_id": "c", "name": "f", "arguments": ""}, "assistant"),
    ({"type": "mcp_approval_response", "approval_request_id": "a", "approve": False}, "user"),
    ({"type": "compaction", "encrypted_content": "x"}, "assistant"),
])
async def test_roles_map_as_documented(item: dict[str, Any], role: str) -> None:
    assert item_role(item) == role


# --- differential: the same operations as SQLiteSession(":memory:") ----------

ITEMS = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "developer"]),
                           "content": TEXT}),
    st.fixed_dictionaries({"type": st.just("message"), "role": st.just("user"), "content": st.lists(
        st.fixed_dictionaries({"type": st.just("input_text"), "text": TEXT}), max_size=2)}),
    st.fixed_dictionaries({"type": st.just("message"), "id": IDS, "role": st.just("assistant"),
                           "status": st.just("completed"), "content": st.lists(
        st.fixed_dictionaries({"type": st.just("output_text"), "text": TEXT,
                               "annotations": st.just([])}), max_size=2)}),
    st.fixed_dictionaries({"type": st.just("function_call"), "call_id": IDS, "name": TEXT,
                           "arguments": TEXT}),
    st.fixed_dictionaries({"type": st.just("function_call_output"), "call_id": IDS,
                           "output": TEXT}),
    st.fixed_dictionaries({"type": st.just("reasoning"), "id": IDS, "summary": st.lists(
        st.fixed_dictionaries({"type": st.just("summary_text"), "text": TEXT}), max_size=2)}),
    # Whatever else a newer SDK adds: any JSON under a type of its own.
    st.fixed_dictionaries({"type": st.just("future_item"), "payload": JSON}),
)
OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.lists(ITEMS, max_size=4)),
    st.tuples(st.just("get"), st.none() | st.integers(-1, 8)),
    st.tuples(st.just("pop")),
    st.tuples(st.just("clear")),
), max_size=10)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(operations=OPERATIONS)
async def test_same_results_as_sqlite_session(async_log: AsyncSessionLog,
                                              operations: list[Any]) -> None:
    key = new_key()
    ours = SessionLogSession(key, user_id="u1", log=async_log)
    reference = SQLiteSession(key)
    try:
        for op in operations:
            if op[0] == "add":
                assert await ours.add_items(op[1]) == await reference.add_items(op[1])
            elif op[0] == "get":
                assert await ours.get_items(op[1]) == await reference.get_items(op[1])
            elif op[0] == "pop":
                assert await ours.pop_item() == await reference.pop_item()
            else:
                assert await ours.clear_session() == await reference.clear_session()
            assert await ours.get_items() == await reference.get_items()
    finally:
        reference.close()


# --- end to end: a Runner with a scripted model ---------------------------------

@function_tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def _agent() -> Agent:
    model = ScriptedModel([
        [assistant_message("Hello! Ask me about the weather.")],
        [function_call("weather", {"city": "Oslo"}, call_id="call_1")],
        [assistant_message("It is sunny in Oslo.")],
    ])
    return Agent(name="forecaster", instructions="Help with the weather.", model=model,
                 tools=[weather])


async def _converse(session: Any) -> list[Any]:
    agent = _agent()
    outputs = []
    for question in ("Hi", "Weather in Oslo?"):
        result = await Runner.run(agent, question, session=session)
        outputs.append(result.final_output)
    agent.model.assert_complete()
    return outputs


async def test_a_runner_keeps_the_same_history_as_with_sqlite_session(
        async_log: AsyncSessionLog) -> None:
    key = new_key()
    reference = SQLiteSession(key)
    try:
        expected_outputs = await _converse(reference)
        outputs = await _converse(SessionLogSession(key, user_id="u1", log=async_log))
        assert outputs == expected_outputs == ["Hello! Ask me about the weather.",
                                               "It is sunny in Oslo."]
        stored = await SessionLogSession(key, user_id="u1", log=async_log).get_items()
        assert stored == await reference.get_items()
        assert [i.get("type", "message") for i in stored] == [
            "message", "message", "message", "function_call", "function_call_output", "message"]
    finally:
        reference.close()


# --- concurrency: the #2722 scenario ---------------------------------------------

WRITERS, PER_WRITER = 8, 200


@pytest.mark.parametrize("sessions", ["one shared", "one per writer"])
async def test_eight_concurrent_writers_lose_and_duplicate_nothing(
        async_log: AsyncSessionLog, sessions: str) -> None:
    key = new_key()
    session = SessionLogSession(key, user_id="u1", log=async_log)

    async def writer(w: int) -> None:
        # One per writer: 8 requests that each open the same brand-new session.
        mine = session if sessions == "one shared" else SessionLogSession(
            key, user_id="u1", log=async_log)
        for i in range(PER_WRITER):
            await mine.add_items([{"role": "user", "content": f"{w}:{i}"}])

    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    stored = [item["content"] for item in await session.get_items()]
    assert len(stored) == WRITERS * PER_WRITER
    assert len(set(stored)) == WRITERS * PER_WRITER
    for w in range(WRITERS):
        assert [s for s in stored if s.startswith(f"{w}:")] == [
            f"{w}:{i}" for i in range(PER_WRITER)]
