"""The core SQL functions, called the way a psql user calls them
(``select * from log_message(user_id => ..., ...)``): their documented result
columns, the seed scenarios that used to fail with 23503/23505/25P02, and the
listings and deletes."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.helpers import call, call_one, call_sql, column_types, result_columns, table_counts

LOG_MESSAGE_COLUMNS = [
    ("message_id", "uuid"), ("session_id", "uuid"), ("position", "int8"),
    ("created_at", "timestamptz"), ("session_created", "bool"), ("user_created", "bool"),
    ("duplicate", "bool"),
]


def log(db, user_id, session_id, content="hi", role="user", **kwargs):
    return call_one(db, "log_message", user_id=user_id, session_id=session_id,
                    role=role, content=content, **kwargs)


def session_row(db, session_id):
    return db.execute("select * from sessionlog.sessions where id = %s", [session_id]).fetchone()


def positions(db, session_id):
    return [r["position"] for r in db.execute(
        "select position from sessionlog.messages where session_id = %s order by position",
        [session_id])]


# --- create_session ---------------------------------------------------------

def test_create_session_returns_documented_columns(db):
    assert result_columns(db, "create_session", user_id="u1") == [
        ("session_id", "uuid"), ("user_id", "text"), ("token", "text"), ("created", "bool"),
    ]


def test_create_session_without_session_id_creates_a_new_uuid_session(db):
    first = call_one(db, "create_session", user_id="u1")
    second = call_one(db, "create_session", user_id="u1")
    assert first["created"] and second["created"]
    assert first["session_id"] != second["session_id"]
    assert first["user_id"] == "u1" and first["token"] is None
    assert table_counts(db) == {"users": 1, "sessions": 2, "messages": 0,
                                "behavioral_vectors": 0, "auth_decisions": 0}


def test_create_session_stores_title_and_metadata(db):
    row = call_one(db, "create_session", user_id="u1", session_id="chat-1",
                   title="First chat", metadata={"source": "web"})
    assert row["created"] and row["token"] == "chat-1"
    stored = session_row(db, row["session_id"])
    assert stored["title"] == "First chat"
    assert stored["metadata"] == {"source": "web"}
    assert stored["user_id"] == "u1" and stored["token"] == "chat-1"


def test_create_session_twice_returns_the_same_row_with_created_false(db):
    session_id = str(uuid.uuid4())
    first = call_one(db, "create_session", user_id="u1", session_id=session_id, title="t")
    again = call_one(db, "create_session", user_id="u1", session_id=session_id, title="t")
    assert first == {"session_id": uuid.UUID(session_id), "user_id": "u1", "token": None, "created": True}
    assert again == first | {"created": False}
    assert table_counts(db)["sessions"] == 1


def test_create_session_twice_by_token_returns_the_same_row(db):
    first = call_one(db, "create_session", user_id="u1", session_id="default")
    again = call_one(db, "create_session", user_id="u1", session_id="default")
    assert first["created"] and not again["created"]
    assert again["session_id"] == first["session_id"] and again["token"] == "default"
    assert table_counts(db)["sessions"] == 1


def test_create_session_does_not_change_an_existing_session(db):
    first = call_one(db, "create_session", user_id="u1", session_id="s", title="old",
                     metadata={"v": 1})
    call_one(db, "create_session", user_id="u1", session_id="s", title="new", metadata={"v": 2})
    stored = session_row(db, first["session_id"])
    assert (stored["title"], stored["metadata"]) == ("old", {"v": 1})


# --- log_message ------------------------------------------------------------

def test_log_message_returns_documented_columns(db):
    assert result_columns(db, "log_message", user_id="u1", session_id="s1", role="user",
                          content="hi") == LOG_MESSAGE_COLUMNS


def test_message_for_a_session_and_a_user_that_do_not_exist_creates_both(db):
    assert table_counts(db)["users"] == 0
    first = log(db, "u-new", "s-new", "hello")
    assert (first["position"], first["session_created"], first["user_created"],
            first["duplicate"]) == (1, True, True, False)
    second = log(db, "u-new", "s-new", "again", role="assistant")
    assert (second["position"], second["session_created"], second["user_created"],
            second["duplicate"]) == (2, False, False, False)
    assert second["session_id"] == first["session_id"]
    assert table_counts(db) == {"users": 1, "sessions": 1, "messages": 2,
                                "behavioral_vectors": 0, "auth_decisions": 0}
    stored = session_row(db, first["session_id"])
    assert (stored["user_id"], stored["token"], stored["message_count"]) == ("u-new", "s-new", 2)


def test_log_message_stores_every_argument(db):
    row = log(db, "u1", "s1", "the answer", role="assistant", model="gpt-x", tokens=42,
              metadata={"latency_ms": 12, "tags": ["a"]}, client_message_id="c-1")
    stored = db.execute("select * from sessionlog.messages where id = %s",
                        [row["message_id"]]).fetchone()
    assert stored == {
        "id": row["message_id"], "user_id": "u1", "session_id": row["session_id"],
        "position": 1, "role": "assistant", "content": "the answer", "model": "gpt-x",
        "tokens": 42, "metadata": {"latency_ms": 12, "tags": ["a"]},
        "client_message_id": "c-1", "created_at": row["created_at"],
    }


def test_log_message_with_null_metadata_stores_an_empty_object(db):
    row = log(db, "u1", "s1", metadata=None)
    assert db.execute("select metadata from sessionlog.messages where id = %s",
                      [row["message_id"]]).fetchone()["metadata"] == {}


def test_content_may_be_the_empty_string(db):
    row = log(db, "u1", "s1", content="")
    assert db.execute("select content from sessionlog.messages where id = %s",
                      [row["message_id"]]).fetchone()["content"] == ""


def test_seed_ids_test_user_123_and_test_session_456_are_accepted(db):
    # The literal psql call of the seed; the session id is not a UUID: a token.
    row = db.execute(
        "select * from log_message(user_id => 'test-user-123', session_id => 'test-session-456',"
        " role => 'user', content => 'Hello')").fetchone()
    assert (row["position"], row["session_created"], row["user_created"]) == (1, True, True)
    stored = session_row(db, row["session_id"])
    assert (stored["user_id"], stored["token"]) == ("test-user-123", "test-session-456")
    history = call(db, "get_messages", session_id="test-session-456", user_id="test-user-123")
    assert [(m["position"], m["content"]) for m in history] == [(1, "Hello")]


def test_client_generated_uuid_created_then_used_by_log_message(db):
    session_id = str(uuid.uuid4())
    created = call_one(db, "create_session", user_id="user_2abc", session_id=session_id)
    assert created["created"] and created["session_id"] == uuid.UUID(session_id)
    row = log(db, "user_2abc", session_id)
    assert row["session_id"] == uuid.UUID(session_id)
    assert (row["position"], row["session_created"], row["user_created"]) == (1, False, False)
    # The upper-case form is the same UUID, so the same session.
    upper = log(db, "user_2abc", session_id.upper())
    assert upper["session_id"] == uuid.UUID(session_id)
    assert (upper["position"], upper["session_created"]) == (2, False)
    assert table_counts(db)["sessions"] == 1
    assert session_row(db, session_id)["token"] is None


#: Session addresses next to the 8-4-4-4-12 hex form: only the form itself
#: (either case) names a session by id; every near miss is a token.
UUID_FORMS = ["7b0e7cc4-1f3c-4bd4-9d0b-2f0c8b1f5e11", "7B0E7CC4-1F3C-4BD4-9D0B-2F0C8B1F5E12"]
NEAR_MISSES = [
    "7b0e7cc41f3c4bd49d0b2f0c8b1f5e13",  # no hyphens (uuid_in would take it)
    "{7b0e7cc4-1f3c-4bd4-9d0b-2f0c8b1f5e14}",  # braces (so would it)
    "7b0e7cc4-1f3c-4bd4-9d0b-2f0c8b1f5e1g",  # a non-hex digit
    "7b0e7cc4-1f3c-4bd4-9d0b-2f0c8b1f5e1",  # one digit short
    "7b0e7cc4-1f3c-4bd4-9d0b-2f0c8b1f5e155",  # one too many
    "7b0e7cc41-f3c-4bd4-9d0b-2f0c8b1f5e16",  # a hyphen out of place
    "7b0e7cc4-1f3c-4bd4-9d0b-2f0c-b1f5e17",  # five hyphens, length 36
    "------------------------------------",  # hyphens only
    "7b0e7cc4-1f3c-4bd4-9d0b-2f0c8b1f5e1\u0661",  # an Arabic-Indic digit
]


@pytest.mark.parametrize("address", UUID_FORMS + NEAR_MISSES)
def test_only_the_hex_form_of_a_uuid_addresses_a_session_by_id(db, address):
    first = log(db, "forms", address)
    is_uuid = address in UUID_FORMS
    session = session_row(db, str(first["session_id"]))
    assert (session["token"] is None) == is_uuid, address
    if is_uuid:
        assert first["session_id"] == uuid.UUID(address)
    else:
        assert session["token"] == address
    # The same address finds the same session again: log_message's one-statement
    # path, log_messages and the readers.
    assert log(db, "forms", address)["session_id"] == first["session_id"]
    batch = call(db, "log_messages", messages=Jsonb([
        {"user_id": "forms", "session_id": address, "role": "user", "content": "c"}]))
    assert [(r["session_id"], r["position"]) for r in batch] == [(first["session_id"], 3)]
    read = call(db, "get_messages", session_id=address, user_id="forms")
    assert [m["position"] for m in read] == [1, 2, 3]


def test_log_message_creates_a_session_under_a_client_generated_uuid(db):
    session_id = str(uuid.uuid4()).upper()
    row = log(db, "u1", session_id)
    assert row["session_id"] == uuid.UUID(session_id) and row["session_created"]
    assert session_row(db, session_id)["token"] is None


def test_logging_inside_a_callers_open_transaction_commits_everything(dsn, db):
    session_id = str(uuid.uuid4())
    with psycopg.connect(dsn, row_factory=dict_row) as conn:  # not autocommit
        assert call_one(conn, "create_session", user_id="tx-user", session_id=session_id)["created"]
        first = log(conn, "tx-user", session_id, "one")
        second = log(conn, "tx-user", "tx-token", "two")
        batch = call(conn, "log_messages", messages=[
            {"user_id": "tx-user", "session_id": session_id, "role": "assistant", "content": "three"},
        ])
        # Still usable: an ordinary statement and a read through the API.
        assert conn.execute("select 1 as one").fetchone() == {"one": 1}
        assert [m["content"] for m in call(conn, "get_messages", session_id=session_id)] == [
            "one", "three"]
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        # Nothing is visible outside the transaction before it commits.
        assert table_counts(db)["messages"] == 0
        conn.commit()
    assert (first["position"], second["position"], batch[0]["position"]) == (1, 1, 2)
    assert table_counts(db) == {"users": 1, "sessions": 2, "messages": 3,
                                "behavioral_vectors": 0, "auth_decisions": 0}


def test_rolling_back_a_callers_transaction_writes_nothing(dsn, db):
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        call_one(conn, "create_session", user_id="tx-user", session_id="a")
        log(conn, "tx-user", "a", "one")
        log(conn, "tx-user", str(uuid.uuid4()), "two")
        assert table_counts(conn)["messages"] == 2
        conn.rollback()
    assert table_counts(db) == dict.fromkeys(table_counts(db), 0)


def test_token_sessions_are_per_user(db):
    alice = log(db, "alice", "default", "from alice")
    bob = log(db, "bob", "default", "from bob")
    assert alice["session_id"] != bob["session_id"]
    assert (alice["session_created"], bob["session_created"]) == (True, True)
    assert (alice["position"], bob["position"]) == (1, 1)
    assert [m["content"] for m in call(db, "get_messages", session_id="default", user_id="alice")] == [
        "from alice"]
    assert [m["content"] for m in call(db, "get_messages", session_id="default", user_id="bob")] == [
        "from bob"]


def test_a_session_addressed_by_token_then_by_uuid_is_the_same_row(db):
    by_token = log(db, "u1", "chat-7", "one")
    by_uuid = log(db, "u1", str(by_token["session_id"]), "two")
    assert by_uuid["session_id"] == by_token["session_id"]
    assert (by_uuid["position"], by_uuid["session_created"]) == (2, False)
    by_token_again = log(db, "u1", "chat-7", "three")
    assert by_token_again["position"] == 3
    assert table_counts(db)["sessions"] == 1


def test_whitespace_around_ids_is_trimmed(db):
    first = log(db, "test-user-123", "test-session-456", client_message_id="k1")
    padded = log(db, "  test-user-123\t", "\n test-session-456 ", client_message_id=" k1 ")
    assert padded["session_id"] == first["session_id"]
    assert padded["duplicate"]  # the same key once trimmed
    spaced_uuid = log(db, "test-user-123", f"  {first['session_id']}  ")
    assert spaced_uuid["session_id"] == first["session_id"] and spaced_uuid["position"] == 2
    assert table_counts(db)["users"] == 1 and table_counts(db)["sessions"] == 1
    assert db.execute("select id from sessionlog.users").fetchone()["id"] == "test-user-123"


@pytest.mark.parametrize("given, stored", [
    ("USER", "user"), (" Assistant ", "assistant"), ("System", "system"), ("tOoL\n", "tool"),
])
def test_roles_are_matched_case_insensitively_and_stored_in_lower_case(db, given, stored):
    row = log(db, "u1", "s1", role=given)
    assert db.execute("select role from sessionlog.messages where id = %s",
                      [row["message_id"]]).fetchone()["role"] == stored


def test_last_activity_at_moves_on_every_write(db):
    created = call_one(db, "create_session", user_id="u1", session_id="s1")
    long_ago = "2000-01-01 00:00:00+00"

    def age_session():
        db.execute("update sessionlog.sessions set last_activity_at = %s where id = %s",
                   [long_ago, created["session_id"]])

    def last_activity():
        return db.execute("select last_activity_at > %s as moved from sessionlog.sessions"
                          " where id = %s", [long_ago, created["session_id"]]).fetchone()["moved"]

    age_session()
    log(db, "u1", "s1")
    assert last_activity()
    age_session()
    log(db, "u1", "s1", client_message_id="k1")
    assert last_activity()
    age_session()
    call(db, "log_messages", messages=[{"user_id": "u1", "session_id": "s1", "role": "user",
                                        "content": "batch"}])
    assert last_activity()


def test_last_activity_at_never_goes_back(db):
    created = call_one(db, "create_session", user_id="u1", session_id="s1")
    future = "2999-01-01 00:00:00+00"
    db.execute("update sessionlog.sessions set last_activity_at = %s where id = %s",
               [future, created["session_id"]])
    log(db, "u1", "s1")
    assert db.execute("select last_activity_at = %s as kept from sessionlog.sessions",
                      [future]).fetchone()["kept"]


# --- log_messages -----------------------------------------------------------

def test_log_messages_returns_one_row_per_element_in_input_order(db):
    known = str(uuid.uuid4())
    call_one(db, "create_session", user_id="u1", session_id=known)
    with db.cursor() as cur:
        query, params = call_sql("log_messages", messages=[
            {"user_id": "u1", "session_id": known, "role": "user", "content": "a"},
            {"user_id": "u2", "session_id": "chat", "role": "user", "content": "b"},
            {"user_id": "u1", "session_id": known, "role": "assistant", "content": "c",
             "model": "m", "tokens": 7, "metadata": {"k": 1}},
            {"user_id": "u2", "session_id": "chat", "role": "assistant", "content": "d"},
            {"user_id": "u1", "session_id": "other", "role": "user", "content": "e"},
        ])
        rows = cur.execute(query, params).fetchall()
        assert column_types(cur) == LOG_MESSAGE_COLUMNS
    summary = [(str(r["session_id"]) == known, r["position"], r["session_created"],
                r["user_created"], r["duplicate"]) for r in rows]
    assert summary == [
        (True, 1, False, False, False),
        (False, 1, True, True, False),
        (True, 2, False, False, False),
        (False, 2, False, False, False),
        (False, 1, True, False, False),
    ]
    assert rows[1]["session_id"] == rows[3]["session_id"] != rows[4]["session_id"]
    assert len({r["message_id"] for r in rows}) == 5
    stored = db.execute("select id, content, model, tokens, metadata from sessionlog.messages"
                        " where id = %s", [rows[2]["message_id"]]).fetchone()
    assert stored == {"id": rows[2]["message_id"], "content": "c", "model": "m", "tokens": 7,
                      "metadata": {"k": 1}}
    assert table_counts(db) == {"users": 2, "sessions": 3, "messages": 5,
                                "behavioral_vectors": 0, "auth_decisions": 0}


def test_log_messages_continues_the_positions_of_log_message(db):
    log(db, "u1", "s1", "one")
    rows = call(db, "log_messages", messages=[
        {"user_id": "u1", "session_id": "s1", "role": "user", "content": str(i)} for i in range(3)
    ])
    assert [r["position"] for r in rows] == [2, 3, 4]
    assert log(db, "u1", "s1", "five")["position"] == 5
    assert positions(db, rows[0]["session_id"]) == [1, 2, 3, 4, 5]
    assert session_row(db, rows[0]["session_id"])["message_count"] == 5


#: Valid arguments in the forms the functions normalize: padded ids, a role in
#: capitals, JSON null for metadata, a whole float for tokens, a padded key.
UNUSUAL_BUT_VALID = [
    {"user_id": "  u1\t", "session_id": " chat-1 ", "role": " Assistant", "content": "",
     "model": None, "tokens": 3.0, "metadata": None, "client_message_id": " key-1 "},
    {"user_id": "u1", "session_id": "chat-1", "role": "TOOL", "content": " padded content ",
     "model": " m ", "tokens": 0, "metadata": {"k": [1, {"n": None}]}},
    {"user_id": "u2", "session_id": "\n%s " % "7b0e7cc4-1f3c-4bd4-9d0b-2f0c8b1f5e11".upper(),
     "role": "system", "content": "x" * 1048576},
]


def stored_messages(db):
    return db.execute(
        "select m.user_id, s.token, case when s.token is null then m.session_id end, m.position, m.role, m.content, m.model,"
        "       m.tokens, m.metadata, m.client_message_id"
        "  from sessionlog.messages m join sessionlog.sessions s on s.id = m.session_id"
        " order by m.user_id, s.token, m.position").fetchall()


def test_log_messages_stores_what_log_message_stores_for_the_same_arguments(db):
    """The batch checks and normalizes its elements in one pass over the
    array; log_message does it argument by argument. Same input, same rows."""
    singles = [log(db, **{**element, "tokens": element.get("tokens") and int(element["tokens"])})
               for element in UNUSUAL_BUT_VALID]
    by_log_message = stored_messages(db)
    db.execute("delete from sessionlog.users")
    batch = call(db, "log_messages", messages=UNUSUAL_BUT_VALID)
    assert stored_messages(db) == by_log_message
    assert [(r["position"], r["session_created"], r["user_created"]) for r in batch] == \
        [(r["position"], r["session_created"], r["user_created"]) for r in singles]


def test_log_messages_with_an_empty_array_writes_nothing(db):
    assert call(db, "log_messages", messages=[]) == []
    assert table_counts(db)["users"] == 0


# --- get_messages -----------------------------------------------------------

def test_get_messages_returns_documented_columns_in_position_order(db):
    first = log(db, "u1", "s1", "one", model="m1", tokens=3, metadata={"a": 1},
                client_message_id="c1")
    log(db, "u1", "s1", "two", role="assistant")
    query_columns = result_columns(db, "get_messages", session_id="s1", user_id="u1")
    assert query_columns == [
        ("message_id", "uuid"), ("session_id", "uuid"), ("position", "int8"), ("role", "text"),
        ("content", "text"), ("model", "text"), ("tokens", "int4"), ("metadata", "jsonb"),
        ("client_message_id", "text"), ("created_at", "timestamptz"),
    ]
    rows = call(db, "get_messages", session_id="s1", user_id="u1")
    assert rows[0] == {
        "message_id": first["message_id"], "session_id": first["session_id"], "position": 1,
        "role": "user", "content": "one", "model": "m1", "tokens": 3, "metadata": {"a": 1},
        "client_message_id": "c1", "created_at": first["created_at"],
    }
    assert [(r["position"], r["content"], r["role"]) for r in rows] == [
        (1, "one", "user"), (2, "two", "assistant")]


def test_get_messages_by_uuid_alone_for_a_trusted_caller(db):
    row = log(db, "u1", "s1", "one")
    rows = call(db, "get_messages", session_id=str(row["session_id"]))
    assert [r["content"] for r in rows] == ["one"]


def test_get_messages_pages_with_after_position_and_max_rows(db):
    call(db, "log_messages", messages=[
        {"user_id": "u1", "session_id": "s1", "role": "user", "content": f"m{i}"}
        for i in range(1, 151)
    ])
    default_page = call(db, "get_messages", session_id="s1", user_id="u1")
    assert [r["position"] for r in default_page] == list(range(1, 101))
    pages, after = [], 0
    while True:
        page = call(db, "get_messages", session_id="s1", user_id="u1",
                    after_position=after, max_rows=40)
        if not page:
            break
        pages.append([r["position"] for r in page])
        after = page[-1]["position"]
    assert [len(p) for p in pages] == [40, 40, 40, 30]
    assert sum(pages, []) == list(range(1, 151))
    assert [r["content"] for r in call(db, "get_messages", session_id="s1", user_id="u1",
                                       after_position=148)] == ["m149", "m150"]
    assert call(db, "get_messages", session_id="s1", user_id="u1", after_position=None,
                max_rows=None) == default_page


def test_get_messages_of_an_unknown_session_is_empty(db):
    log(db, "u1", "s1")
    assert call(db, "get_messages", session_id="nope", user_id="u1") == []
    assert call(db, "get_messages", session_id=str(uuid.uuid4())) == []
    assert call(db, "get_messages", session_id="s1", user_id="someone-else") == []


# --- list_sessions ----------------------------------------------------------

def set_last_activity(db, session_id, timestamp):
    db.execute("update sessionlog.sessions set last_activity_at = %s where id = %s",
               [timestamp, session_id])


def test_list_sessions_returns_documented_columns(db):
    row = log(db, "u1", "chat", "hi")
    call_one(db, "create_session", user_id="u1", session_id="empty", title="T",
             metadata={"a": 1})
    assert result_columns(db, "list_sessions", user_id="u1") == [
        ("session_id", "uuid"), ("user_id", "text"), ("token", "text"), ("title", "text"),
        ("metadata", "jsonb"), ("created_at", "timestamptz"), ("last_activity_at", "timestamptz"),
        ("message_count", "int8"),
    ]
    listing = {r["token"]: r for r in call(db, "list_sessions", user_id="u1")}
    assert listing["chat"]["session_id"] == row["session_id"]
    assert (listing["chat"]["user_id"], listing["chat"]["message_count"]) == ("u1", 1)
    assert (listing["empty"]["title"], listing["empty"]["metadata"],
            listing["empty"]["message_count"]) == ("T", {"a": 1}, 0)


def test_list_sessions_orders_by_newest_activity_first(db):
    ids = {name: log(db, "u1", name)["session_id"] for name in ("a", "b", "c")}
    for name, ts in [("a", "2024-01-01"), ("b", "2024-01-02"), ("c", "2024-01-03")]:
        set_last_activity(db, ids[name], ts)
    assert [r["token"] for r in call(db, "list_sessions", user_id="u1")] == ["c", "b", "a"]
    log(db, "u1", "a")  # a write makes "a" the most recently active
    assert [r["token"] for r in call(db, "list_sessions", user_id="u1")] == ["a", "c", "b"]


def test_list_sessions_breaks_timestamp_ties_deterministically(db):
    ids = [log(db, "u1", f"s{i}")["session_id"] for i in range(6)]
    for session_id in ids:
        set_last_activity(db, session_id, "2024-01-01")
    listing = [r["session_id"] for r in call(db, "list_sessions", user_id="u1")]
    assert listing == sorted(ids, reverse=True)  # ties: by session_id, descending
    assert [r["session_id"] for r in call(db, "list_sessions", user_id="u1")] == listing
    # A page does not cut a tie in two: the next page starts strictly before it.
    assert [r["session_id"] for r in call(db, "list_sessions", user_id="u1", max_rows=3)] == listing


def test_list_sessions_paging_never_loses_sessions_written_in_one_transaction(db):
    # One batch into five sessions: they share one last_activity_at.
    call(db, "log_messages", messages=[
        {"user_id": "u1", "session_id": f"together-{i}", "role": "user", "content": "x"}
        for i in range(5)])
    for i in range(3):
        set_last_activity(db, log(db, "u1", f"alone-{i}")["session_id"], f"2024-01-0{i + 1}")
    seen, before = [], None
    while True:
        page = call(db, "list_sessions", user_id="u1", max_rows=2, before=before)
        if not page:
            break
        seen.extend(r["token"] for r in page)
        before = page[-1]["last_activity_at"]
    assert sorted(seen[:5]) == [f"together-{i}" for i in range(5)]
    assert seen[5:] == ["alone-2", "alone-1", "alone-0"]


def test_list_sessions_pages_with_before(db):
    ids = [log(db, "u1", f"s{i}")["session_id"] for i in range(7)]
    for i, session_id in enumerate(ids):
        set_last_activity(db, session_id, f"2024-01-0{i + 1}")
    pages, before = [], None
    while True:
        page = call(db, "list_sessions", user_id="u1", max_rows=3, before=before)
        if not page:
            break
        pages.append([r["token"] for r in page])
        before = page[-1]["last_activity_at"]
    assert pages == [["s6", "s5", "s4"], ["s3", "s2", "s1"], ["s0"]]


def test_list_sessions_counts_messages_and_lists_only_the_users_sessions(db):
    for i in range(3):
        log(db, "u1", "busy", str(i))
    log(db, "u1", "quiet")
    log(db, "u2", "busy")
    listing = {r["token"]: r["message_count"] for r in call(db, "list_sessions", user_id="u1")}
    assert listing == {"busy": 3, "quiet": 1}
    assert call(db, "list_sessions", user_id="nobody") == []


def test_list_sessions_default_page_is_50(db):
    call(db, "log_messages", messages=[
        {"user_id": "u1", "session_id": f"s{i}", "role": "user", "content": "x"} for i in range(55)
    ])
    db.execute("update sessionlog.sessions s set last_activity_at = '2024-01-01'::timestamptz"
               " + n * interval '1 second' from (select id, row_number() over (order by id) as n"
               " from sessionlog.sessions) x where x.id = s.id")
    assert len(call(db, "list_sessions", user_id="u1")) == 50
    assert len(call(db, "list_sessions", user_id="u1", max_rows=None)) == 50
    assert len(call(db, "list_sessions", user_id="u1", max_rows=100)) == 55


# --- delete_session and forget_user ----------------------------------------

def add_children(db, user_id, session_id, vectors, decisions):
    """Behavioral vectors and auth decisions, written directly (their
    functions are not part of this slice)."""
    for _ in range(vectors):
        db.execute("insert into sessionlog.behavioral_vectors (user_id, session_id, vector)"
                   " values (%s, %s, '{0.5,1}')", [user_id, session_id])
    for _ in range(decisions):
        db.execute("insert into sessionlog.auth_decisions (user_id, session_id, decision)"
                   " values (%s, %s, 'allow')", [user_id, session_id])


def test_delete_session_returns_counts_and_deletes_everything_under_it(db):
    doomed = log(db, "u1", "doomed")["session_id"]
    for i in range(2):
        log(db, "u1", "doomed", str(i))
    add_children(db, "u1", doomed, vectors=2, decisions=4)
    kept = log(db, "u1", "kept")["session_id"]
    add_children(db, "u1", kept, vectors=1, decisions=1)

    result = call_one(db, "delete_session", session_id="doomed", user_id="u1")
    assert result == {"deleted": True, "messages_deleted": 3, "behavioral_vectors_deleted": 2,
                      "auth_decisions_deleted": 4}
    assert table_counts(db) == {"users": 1, "sessions": 1, "messages": 1,
                                "behavioral_vectors": 1, "auth_decisions": 1}
    assert session_row(db, doomed) is None and session_row(db, kept) is not None
    assert call_one(db, "delete_session", session_id="doomed", user_id="u1") == {
        "deleted": False, "messages_deleted": 0, "behavioral_vectors_deleted": 0,
        "auth_decisions_deleted": 0}


def test_delete_session_returns_documented_columns(db):
    log(db, "u1", "s1")
    assert result_columns(db, "delete_session", session_id="s1", user_id="u1") == [
        ("deleted", "bool"), ("messages_deleted", "int8"), ("behavioral_vectors_deleted", "int8"),
        ("auth_decisions_deleted", "int8"),
    ]


def test_delete_session_by_uuid(db):
    session_id = log(db, "u1", str(uuid.uuid4()))["session_id"]
    result = call_one(db, "delete_session", session_id=str(session_id).upper(), user_id="u1")
    assert (result["deleted"], result["messages_deleted"]) == (True, 1)
    assert table_counts(db)["sessions"] == 0 and table_counts(db)["users"] == 1


def test_delete_session_of_another_user_deletes_nothing(db):
    session_id = log(db, "u1", "s1")["session_id"]
    result = call_one(db, "delete_session", session_id=str(session_id), user_id="u2")
    assert result["deleted"] is False and result["messages_deleted"] == 0
    assert call_one(db, "delete_session", session_id="s1", user_id="u2")["deleted"] is False
    assert table_counts(db)["messages"] == 1 and table_counts(db)["sessions"] == 1


def test_deleted_session_token_can_be_used_again(db):
    first = log(db, "u1", "s1")
    call_one(db, "delete_session", session_id="s1", user_id="u1")
    again = log(db, "u1", "s1")
    assert again["session_created"] and again["position"] == 1
    assert again["session_id"] != first["session_id"]


def test_forget_user_returns_counts_and_deletes_everything_of_theirs(db):
    for token, messages, vectors, decisions in [("a", 3, 1, 2), ("b", 2, 2, 0)]:
        for i in range(messages):
            session_id = log(db, "gone", token, str(i))["session_id"]
        add_children(db, "gone", session_id, vectors, decisions)
    call_one(db, "create_session", user_id="gone", session_id="empty")
    kept = log(db, "stays", "a")["session_id"]
    add_children(db, "stays", kept, vectors=1, decisions=1)

    assert result_columns(db, "forget_user", user_id="nobody") == [
        ("user_deleted", "bool"), ("sessions_deleted", "int8"), ("messages_deleted", "int8"),
        ("behavioral_vectors_deleted", "int8"), ("auth_decisions_deleted", "int8"),
    ]
    result = call_one(db, "forget_user", user_id="gone")
    assert result == {"user_deleted": True, "sessions_deleted": 3, "messages_deleted": 5,
                      "behavioral_vectors_deleted": 3, "auth_decisions_deleted": 2}
    assert table_counts(db) == {"users": 1, "sessions": 1, "messages": 1,
                                "behavioral_vectors": 1, "auth_decisions": 1}
    assert call_one(db, "forget_user", user_id="gone") == {
        "user_deleted": False, "sessions_deleted": 0, "messages_deleted": 0,
        "behavioral_vectors_deleted": 0, "auth_decisions_deleted": 0}


def test_deleting_a_user_row_cascades_to_everything_under_it(db):
    # The schema's own ON DELETE CASCADE, for a delete that bypasses forget_user.
    session_id = log(db, "u1", "s1")["session_id"]
    add_children(db, "u1", session_id, vectors=1, decisions=1)
    db.execute("delete from sessionlog.users where id = 'u1'")
    assert table_counts(db) == dict.fromkeys(table_counts(db), 0)


def test_json_null_metadata_means_an_empty_object(db):
    row = db.execute(
        "select * from log_message(user_id => 'u', session_id => 's', role => 'user',"
        " content => 'x', metadata => 'null'::jsonb)").fetchone()
    stored = db.execute("select metadata from sessionlog.messages where id = %s",
                        [row["message_id"]]).fetchone()
    assert stored["metadata"] == {}


def test_batch_accepts_tokens_written_as_a_whole_float(db):
    rows = db.execute(
        """select * from log_messages('[{"user_id": "u", "session_id": "s", "role": "user",
                                         "content": "x", "tokens": 2.0}]')""").fetchall()
    stored = db.execute("select tokens from sessionlog.messages where id = %s",
                        [rows[0]["message_id"]]).fetchone()
    assert stored["tokens"] == 2


@pytest.mark.parametrize("fn, args, table, key", [
    ("create_session", "", "sessions", "session_id"),
    ("log_interaction", ", prompt => 'p', response => 'r'", "messages", "prompt_message_id"),
    ("store_behavioral_vector", ", vector => '{1}'", "behavioral_vectors", "vector_id"),
    ("store_auth_decision", ", decision => 'allow'", "auth_decisions", "decision_id"),
])
def test_json_null_metadata_means_an_empty_object_for_every_write(db, fn, args, table, key):
    row = db.execute(f"select * from {fn}(user_id => 'u', session_id => 's'{args},"
                     " metadata => 'null'::jsonb)").fetchone()
    stored = db.execute(f"select metadata from sessionlog.{table} where id = %s",
                        [row[key]]).fetchone()
    assert stored["metadata"] == {}
