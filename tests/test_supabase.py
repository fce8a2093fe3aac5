"""``SupabaseSessionLog`` with the real supabase-py client, against the
PostgREST stand-in of tests/postgrest_stub.py: the same results and error
classes as ``SessionLog``, PostgREST's HTTP statuses, and the role model of
DESIGN.md (anon: nothing; authenticated: the conversation API only, only as
the JWT subject, never the behavioral-auth functions; service_role: any
user)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from postgrest.exceptions import APIError
from sessionlog import (
    ConnectionFailed,
    IdempotencyConflict,
    InvalidArgument,
    NotOwner,
    SessionLog,
    SessionLogError,
    SupabaseSessionLog,
)
from sessionlog.errors import from_postgrest
from supabase import Client, create_client

from tests.postgrest_stub import PostgrestStub, sign_jwt
from tests.test_client import assert_typed, new_session, snapshot

# supabase-py 2.34 warns about its own use of postgrest's deprecated options.
ANON_KEY = sign_jwt({"role": "anon", "iss": "supabase"})
SERVICE_KEY = sign_jwt({"role": "service_role", "iss": "supabase"})


def user_jwt(sub: str) -> str:
    """The access token of a signed-in user, as Supabase Auth issues it."""
    return sign_jwt({"role": "authenticated", "sub": sub, "aud": "authenticated"})


@pytest.fixture
def api(dsn: str) -> Iterator[PostgrestStub]:
    """PostgREST's rpc endpoint for this test's database, on a free port."""
    with PostgrestStub(dsn) as stub:
        yield stub


@pytest.fixture
def connect(api: PostgrestStub) -> Iterator[Callable[..., Client]]:
    """``connect(key, access_token=None)``: a supabase client, closed afterwards."""
    clients: list[Client] = []

    def make(key: str, access_token: str | None = None) -> Client:
        client = create_client(api.url, key)
        if access_token is not None:
            client.postgrest.auth(access_token)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.postgrest.aclose()


@pytest.fixture
def service(connect: Callable[..., Client]) -> SupabaseSessionLog:
    return SupabaseSessionLog(connect(SERVICE_KEY))


@pytest.fixture
def anon(connect: Callable[..., Client]) -> SupabaseSessionLog:
    return SupabaseSessionLog(connect(ANON_KEY))


@pytest.fixture
def as_user(connect: Callable[..., Client]) -> Callable[[str], SupabaseSessionLog]:
    """``as_user("alice")``: a browser's client, the anon key plus alice's token."""
    return lambda sub: SupabaseSessionLog(connect(ANON_KEY, user_jwt(sub)))


@pytest.fixture
def direct(db: psycopg.Connection) -> SessionLog:
    """The psycopg client on the same database, as the owner."""
    return SessionLog.from_connection(db)


def for_each(names: Any, check: Callable[[str], None]) -> None:
    """Run ``check(name)`` for every name and fail naming each one that failed."""
    failures = {}
    for name in names:
        try:
            check(name)
        except (Exception, pytest.fail.Exception) as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"
    assert not failures, failures


def post(api: PostgrestStub, fn: str, body: dict[str, Any], key: str,
         token: str | None = None) -> httpx.Response:
    """A raw ``POST /rest/v1/rpc/<fn>``, headers as supabase-js sends them."""
    return httpx.post(f"{api.url}/rest/v1/rpc/{fn}", json=body,
                      headers={"apikey": key, "Authorization": f"Bearer {token or key}"})


# --- the same results as SessionLog ----------------------------------------

WRITES: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "create_session": lambda u, s: dict(user_id=u, session_id=s, title="t", metadata={"a": 1}),
    "log_message": lambda u, s: dict(user_id=u, session_id=s, role="user", content="hi",
                                     model="m", tokens=2, metadata={"a": [1]},
                                     client_message_id="k"),
    "log_messages": lambda u, s: dict(messages=[
        dict(user_id=u, session_id=s, role="user", content="a"),
        dict(user_id=u, session_id=s, role="assistant", content="b", tokens=1)]),
    "log_interaction": lambda u, s: dict(user_id=u, session_id=s, prompt="p", response="r",
                                         model="m", tokens=3, metadata={"x": "y"}),
    "store_behavioral_vector": lambda u, s: dict(user_id=u, session_id=s, vector=[0.1, 1e-9, 3],
                                                 event_type="typing", metadata={"d": 1}),
    "store_auth_decision": lambda u, s: dict(user_id=u, session_id=s, decision="deny",
                                             confidence=0.9, risk_score=0.1, risk_level="LOW"),
}


def test_every_write_through_rpc_returns_the_same_dataclass_as_sessionlog(
        service: SupabaseSessionLog, direct: SessionLog) -> None:
    def check(method: str) -> None:
        session = new_session()
        through_rpc = getattr(service, method)(**WRITES[method]("u-rpc", session))
        through_sql = getattr(direct, method)(**WRITES[method]("u-sql", new_session()))
        assert type(through_rpc) is type(through_sql)
        for result in through_rpc if isinstance(through_rpc, list) else [through_rpc]:
            assert_typed(result)
            assert result.session_id == uuid.UUID(session)

    for_each(WRITES, check)


def test_listings_through_rpc_equal_the_sessionlog_listings(
        service: SupabaseSessionLog, direct: SessionLog) -> None:
    session = new_session()
    service.log_message(user_id="u1", session_id="older", role="user", content="first")
    for method, args in WRITES.items():
        getattr(service, method)(**args("u1", session))
    newest = direct.list_sessions(user_id="u1")[0].last_activity_at
    reads = [("get_messages", dict(session_id=session, user_id="u1")),
             ("get_messages", dict(session_id=session, after_position=2, max_rows=2)),
             ("get_behavioral_vectors", dict(session_id=session, user_id="u1")),
             ("get_auth_decisions", dict(session_id=session, user_id="u1")),
             ("list_sessions", dict(user_id="u1")),
             ("list_sessions", dict(user_id="u1", max_rows=1)),
             ("list_sessions", dict(user_id="u1", before=newest))]
    for method, args in reads:
        through_rpc = getattr(service, method)(**args)
        assert through_rpc, method
        assert through_rpc == getattr(direct, method)(**args), method
        for row in through_rpc:
            assert_typed(row)


def test_delete_session_and_forget_user_through_rpc_equal_sessionlog(
        service: SupabaseSessionLog, direct: SessionLog) -> None:
    for user in ("u-rpc", "u-sql"):
        service.log_interaction(user_id=user, session_id="s", prompt="p", response="r")
        service.store_auth_decision(user_id=user, session_id="s", decision="allow")
    assert service.delete_session(session_id="s", user_id="u-rpc") == \
        direct.delete_session(session_id="s", user_id="u-sql")
    assert service.forget_user(user_id="u-rpc") == direct.forget_user(user_id="u-sql")
    assert service.get_messages(session_id="s", user_id="u-rpc") == []


def test_timestamps_through_rpc_are_the_same_instants(service: SupabaseSessionLog,
                                                       direct: SessionLog) -> None:
    logged = service.log_message(user_id="u", session_id="s", role="user", content="hi")
    (message,) = direct.get_messages(session_id="s", user_id="u")
    assert logged.created_at == message.created_at
    assert logged.created_at.tzinfo is not None


# --- errors: the same classes, message and hint -----------------------------

ERRORS = {
    "22023 bad argument": (InvalidArgument, "log_message",
                           dict(user_id="u", session_id="s", role="robot", content="x"), 400),
    "22023 bad vector": (InvalidArgument, "store_behavioral_vector",
                         dict(user_id="u", session_id="s", vector=[]), 400),
    "42501 another user's session": (NotOwner, "log_message",
                                     dict(user_id="bob", session_id="ALICE", role="user",
                                          content="x"), 403),
    "23505 reused key": (IdempotencyConflict, "log_message",
                         dict(user_id="alice", session_id="s", role="user", content="new",
                              client_message_id="k"), 409),
}


@pytest.fixture
def alice_session(direct: SessionLog) -> str:
    """Alice's session (by UUID), holding message 'old' with key 'k' in her session 's'."""
    direct.log_message(user_id="alice", session_id="s", role="user", content="old",
                       client_message_id="k")
    return str(direct.create_session(user_id="alice").session_id)


@pytest.mark.parametrize("case", ERRORS)
def test_error_through_rpc_is_the_sessionlog_error_with_postgrests_status(
        service: SupabaseSessionLog, direct: SessionLog, api: PostgrestStub,
        db: psycopg.Connection, alice_session: str, case: str) -> None:
    error_class, method, args, status = ERRORS[case]
    args = {k: alice_session if v == "ALICE" else v for k, v in args.items()}
    before = snapshot(db)
    with pytest.raises(error_class) as through_rpc:
        getattr(service, method)(**args)
    with pytest.raises(error_class) as through_sql:
        getattr(direct, method)(**args)
    rpc_error, sql_error = through_rpc.value, through_sql.value
    assert (rpc_error.sqlstate, rpc_error.message, rpc_error.hint, rpc_error.detail) == \
        (sql_error.sqlstate, sql_error.message, sql_error.hint, sql_error.detail)
    assert rpc_error.message and rpc_error.hint
    response = post(api, method, args, SERVICE_KEY)
    assert response.status_code == status
    assert response.json() == {"code": sql_error.sqlstate, "message": sql_error.message,
                               "details": sql_error.detail, "hint": sql_error.hint}
    assert snapshot(db) == before


def test_unknown_parameter_is_pgrst202_not_found(api: PostgrestStub,
                                                 connect: Callable[..., Client]) -> None:
    response = post(api, "log_message", {"user_id": "u", "session_id": "s", "rol": "user",
                                         "content": "x"}, SERVICE_KEY)
    assert response.status_code == 404 and response.json()["code"] == "PGRST202"
    with pytest.raises(APIError) as raised:
        connect(SERVICE_KEY).rpc("no_such_function", {}).execute()
    error = from_postgrest(raised.value)
    assert type(error) is SessionLogError and error.sqlstate == "PGRST202"


def test_unreachable_endpoint_raises_connection_failed() -> None:
    # A port held bound but never listening refuses every connection, and
    # no other process can take it while the test runs.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        client = create_client(f"http://127.0.0.1:{port}", SERVICE_KEY)
        try:
            with pytest.raises(ConnectionFailed):
                SupabaseSessionLog(client).list_sessions(user_id="u")
        finally:
            client.postgrest.aclose()


# --- roles -------------------------------------------------------------------

ALL_CALLS: dict[str, dict[str, Any]] = {
    "create_session": dict(session_id="s"),
    "log_message": dict(session_id="s", role="user", content="x"),
    "log_messages": dict(messages=[dict(session_id="s", role="user", content="x")]),
    "log_interaction": dict(session_id="s", prompt="p", response="r"),
    "store_behavioral_vector": dict(session_id="s", vector=[1]),
    "store_auth_decision": dict(session_id="s", decision="allow"),
    "get_messages": dict(session_id="s"),
    "get_behavioral_vectors": dict(session_id="s"),
    "get_auth_decisions": dict(session_id="s"),
    "list_sessions": dict(),
    "update_session": dict(session_id="s", title="t"),
    "pop_message": dict(session_id="s"),
    "clear_messages": dict(session_id="s"),
    "prune_sessions": dict(inactive_before="2000-01-01T00:00:00+00:00"),  # also a raw JSON body
    "delete_session": dict(session_id="s"),
    "forget_user": dict(),
}


def test_anon_can_call_nothing(anon: SupabaseSessionLog, api: PostgrestStub,
                               db: psycopg.Connection) -> None:
    before = snapshot(db)

    def check(method: str) -> None:
        args = {**ALL_CALLS[method], **({} if method == "log_messages" else {"user_id": "u"})}
        with pytest.raises(NotOwner) as raised:
            getattr(anon, method)(**args)
        assert raised.value.sqlstate == "42501"
        response = post(api, method, args, ANON_KEY)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"

    for_each(ALL_CALLS, check)
    assert snapshot(db) == before


#: The behavioral-auth engine's functions: for a service-key backend only.
BEHAVIORAL = ("store_behavioral_vector", "store_auth_decision", "get_behavioral_vectors",
              "get_auth_decisions")
CONVERSATION = [method for method in ALL_CALLS if method not in BEHAVIORAL]


def test_authenticated_user_id_defaults_to_the_jwt_subject(
        as_user: Callable[[str], SupabaseSessionLog], service: SupabaseSessionLog,
        db: psycopg.Connection) -> None:
    alice = as_user("alice")

    def bobs_rows() -> list[dict[str, Any]]:
        return db.execute("select 'session' as kind, id::text, token, title, metadata::text"
                          " from sessionlog.sessions where user_id = 'bob' union all"
                          " select 'message', id::text, null, content, metadata::text"
                          " from sessionlog.messages where user_id = 'bob' union all"
                          " select 'vector', id::text, null, event_type, metadata::text"
                          " from sessionlog.behavioral_vectors where user_id = 'bob' union all"
                          " select 'decision', id::text, null, decision, metadata::text"
                          " from sessionlog.auth_decisions where user_id = 'bob' order by 1, 2"
                          ).fetchall()

    def check(method: str) -> None:
        # Bob has a session of the same name with rows of every kind: a call
        # that fell back to any user but the subject would find or change it.
        for user in ("alice", "bob"):
            service.log_message(user_id=user, session_id="s", role="user", content=user)
            service.store_behavioral_vector(user_id=user, session_id="s", vector=[1],
                                            event_type=user)
            service.store_auth_decision(user_id=user, session_id="s", decision="allow",
                                        metadata={"owner": user})
        bob_before = bobs_rows()
        alices = {row["id"] for row in db.execute(
            "select id from sessionlog.sessions where user_id = 'alice'").fetchall()}
        result = getattr(alice, method)(**ALL_CALLS[method])
        assert bobs_rows() == bob_before, method
        owners = db.execute("select distinct user_id from sessionlog.sessions").fetchall()
        assert {row["user_id"] for row in owners} <= {"alice", "bob"}
        if method in ("forget_user",):
            assert result.user_deleted and result.sessions_deleted == len(alices)
        elif method == "list_sessions":
            assert {s.session_id for s in result} == alices
        elif method == "get_messages":
            marks = {m.content for m in result}
            assert "alice" in marks and "bob" not in marks
        elif method == "get_behavioral_vectors":
            marks = {v.event_type for v in result}
            assert "alice" in marks and "bob" not in marks
        elif method == "get_auth_decisions":
            marks = {d.metadata.get("owner") for d in result}
            assert "alice" in marks and "bob" not in marks
        elif method == "delete_session":
            assert result.deleted
        elif method == "log_messages":
            assert {r.session_id for r in result} <= alices
        elif method == "clear_messages":
            assert result.messages_deleted >= 1  # alice's "s", never bob's
        elif method == "prune_sessions":
            assert result.sessions_deleted == 0  # nobody was inactive in 2000
        else:
            assert result.session_id in alices

    for_each(CONVERSATION, check)


def test_authenticated_may_not_call_the_behavioral_auth_functions(
        as_user: Callable[[str], SupabaseSessionLog], api: PostgrestStub,
        db: psycopg.Connection) -> None:
    alice = as_user("alice")
    alice.log_message(session_id="s", role="user", content="seed")
    before = snapshot(db)

    def check(method: str) -> None:
        with pytest.raises(NotOwner) as raised:
            getattr(alice, method)(**ALL_CALLS[method])
        assert raised.value.sqlstate == "42501"
        assert f"permission denied for function {method}" in raised.value.message
        response = post(api, method, ALL_CALLS[method], ANON_KEY, token=user_jwt("alice"))
        assert response.status_code == 403 and response.json()["code"] == "42501"
        assert snapshot(db) == before

    for_each(BEHAVIORAL, check)
    # The forgery of the issue: a signed-in user allowing itself.
    with pytest.raises(NotOwner):
        alice.store_auth_decision(session_id="s", decision="allow", confidence=1.0)
    assert snapshot(db) == before


def test_authenticated_writes_land_in_the_subjects_rows(
        as_user: Callable[[str], SupabaseSessionLog], direct: SessionLog) -> None:
    alice = as_user("alice")
    logged = alice.log_message(session_id="chat", role="user", content="hi")
    alice.log_interaction(session_id="chat", prompt="p", response="r")
    assert [s.session_id for s in direct.list_sessions(user_id="alice")] == [logged.session_id]
    assert len(direct.get_messages(session_id="chat", user_id="alice")) == 3
    assert alice.get_messages(session_id="chat") == \
        direct.get_messages(session_id="chat", user_id="alice")
    assert alice.list_sessions() == direct.list_sessions(user_id="alice")


def test_authenticated_user_id_equal_to_the_subject_is_accepted(
        as_user: Callable[[str], SupabaseSessionLog]) -> None:
    alice = as_user("alice")
    assert alice.log_message(user_id="alice", session_id="s", role="user",
                             content="x").position == 1
    assert alice.log_message(user_id=" alice ", session_id="s", role="user",
                             content="y").position == 2
    assert len(alice.get_messages(session_id="s", user_id="alice")) == 2
    assert alice.forget_user(user_id="alice").user_deleted


def test_authenticated_other_user_id_is_refused_and_nothing_written(
        as_user: Callable[[str], SupabaseSessionLog], direct: SessionLog,
        db: psycopg.Connection) -> None:
    direct.log_message(user_id="bob", session_id="s", role="user", content="bob's")
    alice = as_user("alice")
    before = snapshot(db)

    def check(method: str) -> None:
        args = dict(ALL_CALLS[method])
        if method == "log_messages":
            args["messages"] = [{**m, "user_id": "bob"} for m in args["messages"]]
        else:
            args["user_id"] = "bob"
        with pytest.raises(NotOwner) as raised:
            getattr(alice, method)(**args)
        assert ("permission denied for function" if method in BEHAVIORAL else "bob") \
            in raised.value.message
        assert snapshot(db) == before

    for_each(ALL_CALLS, check)


WRITERS = ["create_session", "log_message", "log_messages", "log_interaction",
           "store_behavioral_vector", "store_auth_decision"]


def test_authenticated_write_into_another_users_session_is_refused(
        as_user: Callable[[str], SupabaseSessionLog], alice_session: str,
        db: psycopg.Connection) -> None:
    bob = as_user("bob")
    before = snapshot(db)

    def check(method: str) -> None:
        args = dict(ALL_CALLS[method])
        if method == "log_messages":
            args["messages"] = [{**m, "session_id": alice_session} for m in args["messages"]]
        else:
            args["session_id"] = alice_session
        with pytest.raises(NotOwner) as raised:
            getattr(bob, method)(**args)
        assert ("permission denied for function" if method in BEHAVIORAL else alice_session) \
            in raised.value.message
        assert snapshot(db) == before

    for_each(WRITERS, check)


def test_authenticated_reads_of_another_users_session_are_empty(
        as_user: Callable[[str], SupabaseSessionLog], direct: SessionLog,
        alice_session: str) -> None:
    direct.log_message(user_id="alice", session_id=alice_session, role="user", content="x")
    direct.store_behavioral_vector(user_id="alice", session_id=alice_session, vector=[1])
    direct.store_auth_decision(user_id="alice", session_id=alice_session, decision="allow")
    alice, bob = as_user("alice"), as_user("bob")
    assert len(alice.get_messages(session_id=alice_session)) == 1
    assert bob.get_messages(session_id=alice_session) == []
    assert len(alice.list_sessions()) == 2  # the fixture's session "s" too
    assert bob.list_sessions() == []
    for method in ("get_behavioral_vectors", "get_auth_decisions"):  # not even her own
        for user in (alice, bob):
            with pytest.raises(NotOwner):
                getattr(user, method)(session_id=alice_session)


def test_authenticated_delete_of_another_users_session_deletes_nothing(
        as_user: Callable[[str], SupabaseSessionLog], direct: SessionLog,
        db: psycopg.Connection, alice_session: str) -> None:
    direct.log_message(user_id="alice", session_id=alice_session, role="user", content="x")
    before = snapshot(db)
    deleted = as_user("bob").delete_session(session_id=alice_session)
    assert not deleted.deleted and deleted.messages_deleted == 0
    assert snapshot(db) == before
    assert as_user("alice").delete_session(session_id=alice_session).deleted


def test_authenticated_token_without_subject_is_refused(connect: Callable[..., Client],
                                                        db: psycopg.Connection) -> None:
    nobody = SupabaseSessionLog(connect(ANON_KEY, sign_jwt({"role": "authenticated"})))
    before = snapshot(db)
    with pytest.raises(NotOwner):
        nobody.log_message(session_id="s", role="user", content="x")
    assert snapshot(db) == before


def test_badly_signed_token_is_rejected(api: PostgrestStub, db: psycopg.Connection) -> None:
    forged = sign_jwt({"role": "service_role"}, secret=b"not-the-project-secret-0123456789")
    response = post(api, "list_sessions", {"user_id": "u"}, ANON_KEY, token=forged)
    assert response.status_code == 401 and response.json()["code"] == "PGRST301"


def test_service_role_acts_for_any_user(service: SupabaseSessionLog,
                                        direct: SessionLog) -> None:
    for user in ("alice", "bob"):
        service.log_message(user_id=user, session_id="s", role="user", content=user)
        service.store_auth_decision(user_id=user, session_id="s", decision="allow")
    assert [m.content for m in service.get_messages(session_id="s", user_id="bob")] == ["bob"]
    alice_session = service.list_sessions(user_id="alice")[0].session_id
    assert service.get_messages(session_id=alice_session)[0].content == "alice"
    assert service.delete_session(session_id=alice_session).deleted
    assert service.forget_user(user_id="bob").sessions_deleted == 1
    assert direct.list_sessions(user_id="alice") == direct.list_sessions(user_id="bob") == []


# --- JSON null is an omitted argument ----------------------------------------

WRITES_WITH_NULLS: dict[str, dict[str, Any]] = {
    "create_session": dict(user_id="u", session_id=None, title=None, metadata=None),
    "log_message": dict(user_id="u", session_id="s", role="user", content="x", model=None,
                        tokens=None, metadata=None, client_message_id=None),
    "log_interaction": dict(user_id="u", session_id="s", prompt="p", response="r",
                            model=None, tokens=None, metadata=None, client_message_id=None),
    "store_behavioral_vector": dict(user_id="u", session_id="s", vector=[1], event_type=None,
                                    metadata=None),
    "store_auth_decision": dict(user_id="u", session_id="s", decision="allow", confidence=None,
                                risk_score=None, risk_level=None, metadata=None),
}
READS_WITH_NULLS: dict[str, dict[str, Any]] = {
    "get_messages": dict(session_id="s", user_id="u", after_position=None, max_rows=None),
    "get_behavioral_vectors": dict(session_id="s", user_id="u", max_rows=None),
    "get_auth_decisions": dict(session_id="s", user_id="u", max_rows=None),
    "list_sessions": dict(user_id="u", max_rows=None, before=None),
}
# What differs between two writes of the same arguments.
NEW_EACH_TIME = {"message_id", "prompt_message_id", "response_message_id", "vector_id",
                 "decision_id", "session_id", "created_at", "position", "prompt_position",
                 "response_position", "created", "session_created", "user_created"}


def without_nulls(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if v is not None}


@pytest.fixture
def seeded(service: SupabaseSessionLog) -> None:
    """User u's session s with two messages, a vector and a decision."""
    service.log_interaction(user_id="u", session_id="s", prompt="p", response="r")
    service.store_behavioral_vector(user_id="u", session_id="s", vector=[1])
    service.store_auth_decision(user_id="u", session_id="s", decision="allow")


# Where each write stores its rows: (table, the result keys naming them).
STORED_BY: dict[str, tuple[str, tuple[str, ...]]] = {
    "create_session": ("sessions", ("session_id",)),
    "log_message": ("messages", ("message_id",)),
    "log_interaction": ("messages", ("prompt_message_id", "response_message_id")),
    "store_behavioral_vector": ("behavioral_vectors", ("vector_id",)),
    "store_auth_decision": ("auth_decisions", ("decision_id",)),
}
# Columns that differ between two rows written with the same arguments.
NEW_EACH_ROW = {"id", "session_id", "created_at", "last_activity_at", "position"}
# What an omitted optional argument stores (DESIGN.md: NULL, metadata {}).
STORED_DEFAULTS: dict[str, dict[str, Any]] = {
    "create_session": dict(title=None, metadata={}, token=None),
    "log_message": dict(model=None, tokens=None, metadata={}, client_message_id=None),
    "log_interaction": dict(model=None, tokens=None, metadata={}, client_message_id=None),
    "store_behavioral_vector": dict(event_type=None, metadata={}),
    "store_auth_decision": dict(confidence=None, risk_score=None, risk_level=None, metadata={}),
}


def stored_rows(db: psycopg.Connection, fn: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a write stored, as the owner, without what is new each time."""
    table, keys = STORED_BY[fn]
    # A prompt and its response share created_at (one transaction): their
    # positions order them, a random id would not.
    order = "position" if table == "messages" else "created_at, id"
    rows = db.execute(f"select * from sessionlog.{table} where id = any (%s::uuid[])"
                      f" order by {order}", [[result[k] for k in keys]]).fetchall()
    assert len(rows) == len(keys), (fn, result, rows)
    return [{k: v for k, v in row.items() if k not in NEW_EACH_ROW} for row in rows]


def test_json_null_for_optional_parameters_of_writes_behaves_like_omitted(
        connect: Callable[..., Client], db: psycopg.Connection, seeded: None) -> None:
    client = connect(SERVICE_KEY)

    def check(fn: str) -> None:
        with_nulls = client.rpc(fn, WRITES_WITH_NULLS[fn]).execute().data
        omitted = client.rpc(fn, without_nulls(WRITES_WITH_NULLS[fn])).execute().data
        assert isinstance(with_nulls, dict) and isinstance(omitted, dict)
        assert {k: v for k, v in with_nulls.items() if k not in NEW_EACH_TIME} == \
            {k: v for k, v in omitted.items() if k not in NEW_EACH_TIME}
        # What was stored, not only what came back: the same rows, with the
        # documented values for every argument left out.
        stored = stored_rows(db, fn, with_nulls)
        assert stored == stored_rows(db, fn, omitted)
        for row in stored:
            assert {k: row[k] for k in STORED_DEFAULTS[fn]} == STORED_DEFAULTS[fn], (fn, row)

    for_each(WRITES_WITH_NULLS, check)


def test_json_null_for_optional_parameters_of_reads_behaves_like_omitted(
        connect: Callable[..., Client], seeded: None) -> None:
    client = connect(SERVICE_KEY)

    def check(fn: str) -> None:
        with_nulls = client.rpc(fn, READS_WITH_NULLS[fn]).execute().data
        assert with_nulls
        assert with_nulls == client.rpc(fn, without_nulls(READS_WITH_NULLS[fn])).execute().data

    for_each(READS_WITH_NULLS, check)


def test_json_null_metadata_is_stored_as_an_empty_object(connect: Callable[..., Client],
                                                          direct: SessionLog) -> None:
    client = connect(SERVICE_KEY)
    client.rpc("log_message", {"user_id": "u", "session_id": "s", "role": "user",
                               "content": "x", "metadata": None}).execute()
    assert direct.get_messages(session_id="s", user_id="u")[0].metadata == {}


def test_json_null_user_id_under_authenticated_is_the_subject(
        connect: Callable[..., Client], direct: SessionLog) -> None:
    alice = connect(ANON_KEY, user_jwt("alice"))
    alice.rpc("log_message", {"user_id": None, "session_id": "s", "role": "user",
                              "content": "x"}).execute()
    assert len(direct.list_sessions(user_id="alice")) == 1


# --- the response shapes -----------------------------------------------------

def test_single_results_are_one_object_and_listings_arrays(api: PostgrestStub) -> None:
    single = post(api, "log_message", {"user_id": "u", "session_id": "s", "role": "user",
                                       "content": "x"}, SERVICE_KEY)
    assert single.status_code == 200 and isinstance(single.json(), dict)
    listing = post(api, "get_messages", {"user_id": "u", "session_id": "s"}, SERVICE_KEY)
    assert listing.status_code == 200 and isinstance(listing.json(), list)
    empty = post(api, "list_sessions", {"user_id": "nobody"}, SERVICE_KEY)
    assert empty.json() == []
