"""client_message_id makes a retried write safe: the same key with the same
payload returns the original row (duplicate = true) and writes nothing; the
same key with a different payload is 23505 naming the key."""

from __future__ import annotations

import pytest

from tests.helpers import call, call_one, raises_sqlstate, table_counts

PAYLOAD = {"role": "assistant", "content": "The answer is 42.", "model": "gpt-x", "tokens": 12,
           "metadata": {"latency_ms": 250, "tags": ["a", "b"]}}


def log(db, key, session_id="s1", user_id="u1", **payload):
    return call_one(db, "log_message", user_id=user_id, session_id=session_id,
                    client_message_id=key, **(PAYLOAD | payload))


def session_state(db):
    return db.execute("select id, message_count, last_activity_at from sessionlog.sessions"
                      " order by id").fetchall()


def age_sessions(db):
    """Moves last_activity_at into the past, so that any write would move it."""
    db.execute("update sessionlog.sessions set last_activity_at = '2000-01-01'")


def test_a_retry_returns_the_original_row_and_writes_nothing(db):
    original = log(db, "msg-1")
    assert original["duplicate"] is False
    age_sessions(db)
    counts, sessions = table_counts(db), session_state(db)

    retry = log(db, "msg-1")
    assert retry == original | {"duplicate": True, "session_created": False, "user_created": False}
    assert table_counts(db) == counts
    assert session_state(db) == sessions  # last_activity_at and message_count unchanged


def test_a_retry_by_token_and_by_uuid_finds_the_same_key(db):
    original = log(db, "msg-1", session_id="chat")
    by_uuid = log(db, "msg-1", session_id=str(original["session_id"]))
    assert by_uuid["duplicate"] and by_uuid["message_id"] == original["message_id"]


def test_a_retry_matches_after_normalization(db):
    # Same message once the role is normalized and NULL metadata means {}.
    original = log(db, "k", role="user", metadata=None)
    retry = log(db, "k", role=" USER ", metadata={})
    assert retry["duplicate"] and retry["message_id"] == original["message_id"]


def test_a_retry_after_other_messages_returns_the_original_position(db):
    original = log(db, "first")
    log(db, None, content="no key")
    log(db, "third", content="third")
    retry = log(db, "first")
    assert (retry["position"], retry["message_id"], retry["duplicate"]) == (
        1, original["message_id"], True)
    assert log(db, None, content="next")["position"] == 4


@pytest.mark.parametrize("field, other", [
    ("role", "user"),
    ("content", "The answer is 43."),
    ("model", "gpt-y"),
    ("model", None),
    ("tokens", 13),
    ("tokens", None),
    ("metadata", {"latency_ms": 251, "tags": ["a", "b"]}),
    ("metadata", None),
], ids=["role", "content", "model", "model-null", "tokens", "tokens-null", "metadata",
        "metadata-null"])
def test_the_same_key_with_a_different_payload_is_23505_naming_the_key(db, field, other):
    log(db, "msg-1")
    age_sessions(db)
    counts, sessions = table_counts(db), session_state(db)
    with raises_sqlstate("23505", names=["client_message_id", "msg-1"]):
        log(db, "msg-1", **{field: other})
    assert table_counts(db) == counts
    assert session_state(db) == sessions


def test_keys_are_per_session(db):
    first = log(db, "same-key", session_id="s1")
    second = log(db, "same-key", session_id="s2")
    other_user = log(db, "same-key", session_id="s1", user_id="u2")
    assert not (first["duplicate"] or second["duplicate"] or other_user["duplicate"])
    assert len({first["message_id"], second["message_id"], other_user["message_id"]}) == 3
    # A different payload under the same key in another session is no conflict either.
    third = log(db, "same-key", session_id="s3", content="something else")
    assert third["duplicate"] is False
    assert table_counts(db)["messages"] == 4


def test_log_messages_retry_of_a_whole_batch_returns_the_original_rows(db):
    batch = [{"user_id": "u1", "session_id": "s1", "client_message_id": f"k{i}", "role": "user",
              "content": f"m{i}"} for i in range(3)]
    original = call(db, "log_messages", messages=batch)
    age_sessions(db)
    counts, sessions = table_counts(db), session_state(db)
    retry = call(db, "log_messages", messages=batch)
    assert [r["message_id"] for r in retry] == [r["message_id"] for r in original]
    assert [r["position"] for r in retry] == [1, 2, 3]
    assert [r["duplicate"] for r in retry] == [True, True, True]
    assert not any(r["session_created"] or r["user_created"] for r in retry)
    assert table_counts(db) == counts
    assert session_state(db) == sessions


def test_log_messages_key_repeated_across_batches_and_with_log_message(db):
    single = log(db, "k1", role="user", content="a", model=None, tokens=None, metadata=None)
    rows = call(db, "log_messages", messages=[
        {"user_id": "u1", "session_id": "s1", "role": "user", "content": "a",
         "client_message_id": "k1"},
        {"user_id": "u1", "session_id": "s1", "role": "user", "content": "b",
         "client_message_id": "k2"},
    ])
    assert [(r["position"], r["duplicate"]) for r in rows] == [(1, True), (2, False)]
    assert rows[0]["message_id"] == single["message_id"]
    again = log(db, "k2", role="user", content="b", model=None, tokens=None, metadata=None)
    assert (again["duplicate"], again["message_id"]) == (True, rows[1]["message_id"])
    assert table_counts(db)["messages"] == 2


def test_log_messages_key_repeated_inside_one_batch_is_written_once(db):
    element = {"user_id": "u1", "session_id": "s1", "role": "user", "content": "a",
               "client_message_id": "k1"}
    rows = call(db, "log_messages", messages=[
        element,
        {"user_id": "u1", "session_id": "s1", "role": "user", "content": "b"},
        element,
        {"user_id": "u1", "session_id": "s2", "role": "user", "content": "a",
         "client_message_id": "k1"},  # another session: another message
    ])
    assert [(r["position"], r["duplicate"]) for r in rows] == [
        (1, False), (2, False), (1, True), (1, False)]
    assert rows[2]["message_id"] == rows[0]["message_id"]
    assert rows[3]["message_id"] != rows[0]["message_id"]
    assert table_counts(db)["messages"] == 3
    assert db.execute("select message_count from sessionlog.sessions where token = 's1'"
                      ).fetchone()["message_count"] == 2


def test_log_messages_key_repeated_inside_one_batch_with_another_payload_is_23505(db):
    with raises_sqlstate("23505", names=["messages[2]", "client_message_id", "k1"]) as error:
        call(db, "log_messages", messages=[
            {"user_id": "u1", "session_id": "s1", "role": "user", "content": "a",
             "client_message_id": "k1"},
            {"user_id": "u1", "session_id": "s1", "role": "user", "content": "b"},
            {"user_id": "u1", "session_id": "s1", "role": "user", "content": "changed",
             "client_message_id": "k1"},
        ])
    assert "messages[0]" in error.detail
    assert table_counts(db) == dict.fromkeys(table_counts(db), 0)


@pytest.mark.parametrize("field, other", [
    ("role", "assistant"), ("content", "changed"), ("model", "m2"), ("tokens", 2),
    ("metadata", {"v": 2}),
], ids=["role", "content", "model", "tokens", "metadata"])
def test_log_messages_key_reused_across_batches_with_another_payload_is_23505(db, field, other):
    element = {"user_id": "u1", "session_id": "s1", "role": "user", "content": "a",
               "model": "m1", "tokens": 1, "metadata": {"v": 1}, "client_message_id": "k1"}
    call(db, "log_messages", messages=[element])
    age_sessions(db)
    counts, sessions = table_counts(db), session_state(db)
    with raises_sqlstate("23505", names=["messages[1]", "client_message_id", "k1"]) as error:
        call(db, "log_messages", messages=[
            {"user_id": "u1", "session_id": "s1", "role": "user", "content": "fresh"},
            element | {field: other},
        ])
    assert "position 1" in error.detail
    assert table_counts(db) == counts
    assert session_state(db) == sessions
