"""Security model v2 (DESIGN.md, "Roles and security"; issue 11): the
functions are the only door, and a signed-in user cannot forge
authentication evidence.

- every API role (anon; authenticated with a valid JWT; service_role; a
  login role granted service_role) x every public function found in
  pg_proc: allowed, or 42501 with nothing written; through SQL, the Python
  shim and the Supabase adapter;
- every API role x every table of sessionlog x SELECT, INSERT, UPDATE,
  DELETE, TRUNCATE: 42501; the issue's attack (``update sessionlog.sessions
  set message_count = 0``) is 42501 and positions stay gap-free;
- the JWT subject: every malformed ``sub`` is 42501 "no valid authenticated
  user", for a write and a read; ``request.jwt.claims`` wins over a stale
  legacy ``request.jwt.claim.sub``;
- size bounds, each just at and just over: accepted / 22023 naming the
  argument, nothing written;
- a caller's ``pg_temp`` domains named text, uuid, jsonb change nothing;
- row-level security as the second line: a deliberately buggy definer
  function acting for an authenticated caller cannot reach another user's
  rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from supabase import Client, create_client

from sessionlog import NotOwner, SessionLog, SupabaseSessionLog
from tests.helpers import OMIT, call_one, raises_sqlstate
from tests.helpers import call as call_json
from tests.postgrest_stub import PostgrestStub, sign_jwt
from tests.test_client import snapshot

# supabase-py 2.34 warns about its own use of postgrest's deprecated options.
ALICE, BOB = "alice", "bob"
BOB_CHAT = "bob-chat"

#: DESIGN.md, least privilege per function.
CONVERSATION = frozenset({
    "create_session", "log_message", "log_messages", "log_interaction", "get_messages",
    "list_sessions", "update_session", "pop_message", "clear_messages", "delete_session",
    "forget_user", "prune_sessions"})
BEHAVIORAL = frozenset({
    "store_behavioral_vector", "store_auth_decision", "get_behavioral_vectors",
    "get_auth_decisions", "auth_decision_summary"})

#: The callers of DESIGN.md. "backend" is a plain LOGIN role granted
#: service_role, connected without SET ROLE (a trusted backend on plain
#: PostgreSQL).
ROLES = ("anon", "authenticated", "service_role", "backend")
ALLOWED = {"anon": frozenset(), "authenticated": CONVERSATION,
           "service_role": CONVERSATION | BEHAVIORAL, "backend": CONVERSATION | BEHAVIORAL}


def example(fn: str, user: Any, session: str) -> dict[str, Any]:
    """Valid arguments of ``fn`` for ``user`` (OMIT: the JWT subject) and
    one of its sessions. A function missing here fails the matrix: every
    new public function must be placed in it."""
    who = {} if user is OMIT else {"user_id": user}
    at = {"session_id": session}
    return {
        "create_session": {**who, **at, "title": "t", "metadata": {"via": "test"}},
        "log_message": {**who, **at, "role": "user", "content": "hi"},
        "log_messages": {"messages": [{**who, **at, "role": "user", "content": "a"}]},
        "log_interaction": {**who, **at, "prompt": "p", "response": "r"},
        "store_behavioral_vector": {**who, **at, "vector": [0.5, 1.5], "event_type": "tap"},
        "store_auth_decision": {**who, **at, "decision": "allow", "confidence": 1.0},
        "get_messages": {**who, **at},
        "get_behavioral_vectors": {**who, **at},
        "get_auth_decisions": {**who, **at},
        "auth_decision_summary": {**who},
        "list_sessions": {**who},
        "update_session": {**who, **at, "title": "renamed"},
        "pop_message": {**who, **at},
        "clear_messages": {**who, **at},
        "delete_session": {**who, **at},
        "forget_user": {**who},
        "prune_sessions": {**who, "inactive_before": "2000-01-01T00:00:00Z"},
    }[fn]


#: Calls that remove data run last, so that the others find something.
LAST = ("pop_message", "clear_messages", "prune_sessions", "delete_session", "forget_user")


def in_call_order(functions: Any) -> list[str]:
    return sorted(functions, key=lambda fn: (fn in LAST, LAST.index(fn) if fn in LAST else 0, fn))


def call(conn: psycopg.Connection, fn: str, **args: Any) -> list[Any]:
    """tests.helpers.call, with ``vector`` sent as a float8[] literal (a list
    is sent as jsonb there)."""
    if isinstance(args.get("vector"), list):
        args["vector"] = "{" + ",".join(str(v) for v in args["vector"]) + "}"
    return call_json(conn, fn, **args)


def public_functions(db: psycopg.Connection) -> list[str]:
    rows = db.execute("select proname from pg_proc where pronamespace = 'public'::regnamespace"
                      " order by 1").fetchall()
    return [row["proname"] for row in rows]


def for_each(names: Any, check: Callable[[str], None]) -> None:
    """Run ``check(name)`` for every name and fail naming each one that failed."""
    failures = {}
    for name in names:
        try:
            check(name)
        except (Exception, pytest.fail.Exception) as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"
    assert not failures, failures


# --- callers -------------------------------------------------------------------

@pytest.fixture
def backend_role(db: psycopg.Connection) -> Iterator[str]:
    """A plain LOGIN role granted service_role (roles are cluster-wide: dropped after)."""
    name = f"backend_{uuid.uuid4().hex[:12]}"
    db.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
    db.execute(sql.SQL("grant service_role to {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        db.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
        db.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


@pytest.fixture
def connect_as(dsn: str, backend_role: str) -> Iterator[Callable[..., psycopg.Connection]]:
    """``connect_as(role, sub=BOB, dsn=None)``: an autocommit connection acting
    as that caller, set up the way PostgREST sets up a request (role and
    claims), but for the whole connection; to this test's database unless
    ``dsn`` names another."""
    opened: list[psycopg.Connection] = []

    def make(role: str, sub: str = BOB, dsn: str = dsn) -> psycopg.Connection:
        if role == "backend":
            conn = psycopg.connect(make_conninfo(dsn, user=backend_role), autocommit=True,
                                   row_factory=dict_row)
        else:
            conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
            claims = {"role": role, **({"sub": sub} if role == "authenticated" else {})}
            conn.execute("select set_config('request.jwt.claims', %s, false)",
                         [json.dumps(claims)])
        opened.append(conn)
        return conn

    try:
        yield make
    finally:
        for conn in opened:
            conn.close()


@pytest.fixture
def seeded(db: psycopg.Connection) -> str:
    """Alice's session (by UUID) with a message, a vector and a decision; bob's
    session BOB_CHAT with a message, a vector and a decision. Returns Alice's."""
    session = str(uuid.uuid4())
    for user, at in ((ALICE, session), (BOB, BOB_CHAT)):
        call(db, "log_message", user_id=user, session_id=at, role="user", content="mine")
        call(db, "store_behavioral_vector", user_id=user, session_id=at, vector=[1])
        call(db, "store_auth_decision", user_id=user, session_id=at, decision="allow")
    return session


def args_for(role: str, fn: str) -> dict[str, Any]:
    """A signed-in bob names no user (he is his JWT subject); a trusted
    caller names bob."""
    return example(fn, OMIT if role == "authenticated" else BOB, BOB_CHAT)


# --- every role x every public function -------------------------------------------

def test_every_public_function_is_placed_in_the_matrix(db: psycopg.Connection) -> None:
    found = public_functions(db)
    assert {"log_message", "store_auth_decision"} <= set(found)  # the scope is not empty
    unplaced = [fn for fn in found if fn not in CONVERSATION | BEHAVIORAL]
    assert unplaced == [], "DESIGN.md lists who may call these: place them in CONVERSATION or BEHAVIORAL"
    for fn in found:
        example(fn, BOB, BOB_CHAT)  # KeyError: give the new function example arguments


def test_the_catalog_grants_exactly_the_matrix(db: psycopg.Connection,
                                               backend_role: str) -> None:
    def check(fn: str) -> None:
        for role in ROLES:
            grantee = backend_role if role == "backend" else role
            granted = db.execute("select has_function_privilege(%s, p.oid, 'execute') as ok"
                                 " from pg_proc p where p.pronamespace = 'public'::regnamespace"
                                 " and p.proname = %s", [grantee, fn]).fetchone()["ok"]
            assert granted == (fn in ALLOWED[role]), (role, granted)

    for_each(public_functions(db), check)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_call_exactly_its_functions_through_sql(
        role: str, connect_as: Callable[..., psycopg.Connection], db: psycopg.Connection,
        seeded: str) -> None:
    conn = connect_as(role)

    def check(fn: str) -> None:
        before = snapshot(db)
        if fn in ALLOWED[role]:
            with conn.transaction(force_rollback=True):
                call(conn, fn, **args_for(role, fn))
        else:
            with raises_sqlstate("42501", names=[f"permission denied for function {fn}"],
                                 hint=False):
                call(conn, fn, **args_for(role, fn))
            assert snapshot(db) == before, "a refused call wrote something"

    for_each(in_call_order(public_functions(db)), check)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_call_exactly_its_functions_through_the_shim(
        role: str, connect_as: Callable[..., psycopg.Connection], db: psycopg.Connection,
        seeded: str) -> None:
    log = SessionLog.from_connection(connect_as(role))
    exercise(log, role, db)


def exercise(log: Any, role: str, db: psycopg.Connection) -> None:
    """Every public function the client has a method for, in call order:
    allowed calls succeed, refused ones raise NotOwner (42501) and write nothing."""
    functions = [fn for fn in in_call_order(public_functions(db)) if hasattr(log, fn)]
    assert len(functions) >= 13

    def check(fn: str) -> None:
        before = snapshot(db)
        if fn in ALLOWED[role]:
            getattr(log, fn)(**args_for(role, fn))
        else:
            with pytest.raises(NotOwner) as raised:
                getattr(log, fn)(**args_for(role, fn))
            assert raised.value.sqlstate == "42501"
            assert snapshot(db) == before, "a refused call wrote something"

    for_each(functions, check)


@pytest.fixture
def supabase_clients(dsn: str) -> Iterator[Callable[[str], SupabaseSessionLog]]:
    """``supabase_clients(role)``: SupabaseSessionLog over supabase-py and the
    PostgREST stand-in, with the key (and token) of that role."""
    anon_key = sign_jwt({"role": "anon", "iss": "supabase"})
    keys = {"anon": (anon_key, None),
            "authenticated": (anon_key, sign_jwt({"role": "authenticated", "sub": BOB,
                                                  "aud": "authenticated"})),
            "service_role": (sign_jwt({"role": "service_role", "iss": "supabase"}), None)}
    made: list[Client] = []
    with PostgrestStub(dsn) as api:
        def make(role: str) -> SupabaseSessionLog:
            key, token = keys[role]
            client = create_client(api.url, key)
            if token is not None:
                client.postgrest.auth(token)
            made.append(client)
            return SupabaseSessionLog(client)

        try:
            yield make
        finally:
            for client in made:
                client.postgrest.aclose()


@pytest.mark.parametrize("role", ["anon", "authenticated", "service_role"])
def test_each_role_may_call_exactly_its_functions_through_supabase(
        role: str, supabase_clients: Callable[[str], SupabaseSessionLog],
        db: psycopg.Connection, seeded: str) -> None:
    exercise(supabase_clients(role), role, db)


def test_a_signed_in_user_cannot_forge_its_own_authentication_evidence(
        connect_as: Callable[..., psycopg.Connection], db: psycopg.Connection,
        seeded: str) -> None:
    bob = connect_as("authenticated")
    before = snapshot(db)
    with raises_sqlstate("42501", hint=False):
        call(bob, "store_auth_decision", session_id=BOB_CHAT, decision="allow", confidence=1.0)
    with raises_sqlstate("42501", hint=False):
        call(bob, "store_behavioral_vector", session_id=BOB_CHAT, vector=[0.0, 0.0])
    # Not through the definer twins in sessionlog either.
    with raises_sqlstate("42501", hint=False):
        bob.execute("select * from sessionlog.store_auth_decision(session_id => %s,"
                    " decision => 'allow', confidence => 1)", [BOB_CHAT])
    # Nor through the private helpers.
    with raises_sqlstate("42501", hint=False):
        bob.execute("select sessionlog._caller_user()")
    assert snapshot(db) == before


# --- every role x every table x every privilege -------------------------------------

STATEMENTS = {
    "SELECT": "select from sessionlog.{table} limit 1",
    "INSERT": "insert into sessionlog.{table} default values",
    "UPDATE": "update sessionlog.{table} set {column} = {column}",
    "DELETE": "delete from sessionlog.{table}",
    "TRUNCATE": "truncate sessionlog.{table} cascade",
}


@pytest.mark.parametrize("role", ROLES)
def test_no_role_reaches_a_table_directly(role: str,
                                          connect_as: Callable[..., psycopg.Connection],
                                          db: psycopg.Connection, seeded: str) -> None:
    tables = db.execute("""
        select c.relname as table,
               (select a.attname from pg_attribute a where a.attrelid = c.oid
                and a.attnum > 0 and not a.attisdropped order by a.attnum limit 1) as column
        from pg_class c where c.relnamespace = 'sessionlog'::regnamespace
          and c.relkind in ('r', 'p') order by 1""").fetchall()
    assert len(tables) == 5
    conn = connect_as(role)
    before = snapshot(db)

    def check(table_and_privilege: str) -> None:
        table, privilege = table_and_privilege.split(" ")
        column = next(t["column"] for t in tables if t["table"] == table)
        statement = sql.SQL(STATEMENTS[privilege]).format(table=sql.Identifier(table),
                                                          column=sql.Identifier(column))
        with conn.transaction(force_rollback=True):
            with raises_sqlstate("42501", names=["permission denied"], hint=False):
                conn.execute(statement)

    for_each([f"{t['table']} {p}" for t in tables for p in STATEMENTS], check)
    assert snapshot(db) == before


def test_the_message_count_attack_is_refused_and_positions_stay_gap_free(
        connect_as: Callable[..., psycopg.Connection], db: psycopg.Connection) -> None:
    bob = connect_as("authenticated")
    assert call_one(bob, "log_message", session_id="sh", role="user", content="1")["position"] == 1
    for count in (0, 1000):
        with raises_sqlstate("42501", names=["permission denied"], hint=False):
            bob.execute("update sessionlog.sessions set message_count = %s where token = 'sh'",
                        [count])
    with raises_sqlstate("42501", names=["permission denied"], hint=False):
        bob.execute("insert into sessionlog.messages (user_id, session_id, position, role,"
                    " content, created_at) select user_id, id, 7, 'user', 'forged', 'epoch'"
                    " from sessionlog.sessions")
    assert call_one(bob, "log_message", session_id="sh", role="user", content="2")["position"] == 2
    positions = [m["position"] for m in call(bob, "get_messages", session_id="sh")]
    assert positions == [1, 2]


# --- the JWT subject ------------------------------------------------------------------

@contextmanager
def request(conn: psycopg.Connection, claims: str | None, legacy_sub: str | None = None
            ) -> Iterator[psycopg.Connection]:
    """One PostgREST-like request as ``authenticated``: the claims as raw JSON
    text (None: not set at all) and, optionally, the legacy
    ``request.jwt.claim.sub``; everything ends with the transaction."""
    with conn.transaction():
        conn.execute("set local role authenticated")
        if claims is not None:
            conn.execute("select set_config('request.jwt.claims', %s, true)", [claims])
        if legacy_sub is not None:
            conn.execute("select set_config('request.jwt.claim.sub', %s, true)", [legacy_sub])
        yield conn


BAD_SUBJECTS = {
    "empty": '{"sub": ""}',
    "blank": '{"sub": "   "}',
    "300 characters": json.dumps({"sub": "u" * 300}),
    "control character": json.dumps({"sub": "al\u0001ice"}),
    "a number": '{"sub": 123}',
    "a boolean": '{"sub": true}',
    "an array": '{"sub": ["alice"]}',
    "null": '{"sub": null}',
    "missing": '{"role": "authenticated"}',
    "claims not an object": '["alice"]',
}


@pytest.mark.parametrize("claims", BAD_SUBJECTS.values(), ids=BAD_SUBJECTS.keys())
def test_a_malformed_subject_is_no_valid_authenticated_user(claims: str, dsn: str,
                                                            db: psycopg.Connection,
                                                            seeded: str) -> None:
    before = snapshot(db)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        for fn, args in [("log_message", dict(session_id="s", role="user", content="x")),
                         ("get_messages", dict(session_id="s")),
                         ("list_sessions", dict()),
                         ("log_message", dict(user_id=ALICE, session_id="s", role="user",
                                              content="x"))]:
            with raises_sqlstate("42501", names=["no valid authenticated user"]):
                with request(conn, claims):
                    call(conn, fn, **args)
    assert snapshot(db) == before


GOOD_SUBJECTS = {
    "plain": ('{"sub": "alice", "role": "authenticated"}', None, ALICE),
    "padded": ('{"sub": "  alice\\t"}', None, ALICE),
    "255 characters": (json.dumps({"sub": "a" * 255}), None, "a" * 255),
    "legacy claim when claims are absent": (None, ALICE, ALICE),
    "legacy claim when claims are empty": ("", ALICE, ALICE),
    "claims win over a stale legacy claim": ('{"sub": "mallory"}', ALICE, "mallory"),
}


@pytest.mark.parametrize("claims, legacy, user", GOOD_SUBJECTS.values(), ids=GOOD_SUBJECTS.keys())
def test_a_valid_subject_acts_as_that_user(claims: str | None, legacy: str | None, user: str,
                                           dsn: str, db: psycopg.Connection) -> None:
    call(db, "log_message", user_id=ALICE, session_id="chat", role="user", content="alice's")
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        with request(conn, claims, legacy):
            logged = call_one(conn, "log_message", session_id="chat", role="user", content="x")
        with request(conn, claims, legacy):
            read = [m["content"] for m in call(conn, "get_messages", session_id="chat")]
        with request(conn, claims, legacy):
            sessions = call(conn, "list_sessions")
    owner = db.execute("select user_id from sessionlog.sessions where id = %s",
                       [logged["session_id"]]).fetchone()["user_id"]
    assert owner == user
    assert read == (["alice's", "x"] if user == ALICE else ["x"])
    assert [s["user_id"] for s in sessions] == [user]


def test_a_stale_legacy_claim_does_not_read_another_users_messages(
        dsn: str, db: psycopg.Connection) -> None:
    """The issue's finding: mallory's request on a pooled connection that
    still carries alice's legacy claim."""
    call(db, "log_message", user_id=ALICE, session_id="diary", role="user", content="secret")
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("select set_config('request.jwt.claim.sub', 'alice', false)")  # stale
        with request(conn, '{"sub": "mallory", "role": "authenticated"}'):
            assert call(conn, "get_messages", session_id="diary") == []
            assert call(conn, "list_sessions") == []


# --- sizes ----------------------------------------------------------------------------------

MIB = 1048576


def nested(levels: int) -> dict[str, Any]:
    """A JSON object of ``levels`` nested objects, the outermost included."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def metadata_of(size: int) -> dict[str, str]:
    """An object whose JSON text (as jsonb prints it) is ``size`` bytes."""
    value = {"k": ""}
    value["k"] = "x" * (size - len(json.dumps(value)))
    assert len(json.dumps(value)) == size
    return value


def batch_of(size: int) -> list[dict[str, str]]:
    """A log_messages batch whose JSON text is ``size`` bytes, each message
    within the 1 MiB content bound."""
    message = {"user_id": "u", "session_id": "big", "role": "user", "content": ""}
    count = size // (MIB - 1024) + 1
    batch = [dict(message, content="x" * (MIB - 1024)) for _ in range(count)]
    batch[-1]["content"] = ""
    batch[-1]["content"] = "x" * (size - len(json.dumps(batch)))
    assert len(json.dumps(batch)) == size and len(batch[-1]["content"]) <= MIB
    return batch


def log(fn: str, **args: Any) -> tuple[str, dict[str, Any]]:
    return fn, args


#: (argument, fn and arguments just at the bound, the same just over it).
SIZES = {
    "content": ("content", log("log_message", user_id="u", session_id="s", role="user",
                               content="x" * MIB),
                log("log_message", user_id="u", session_id="s", role="user",
                    content="x" * (MIB + 1))),
    "metadata bytes": ("metadata", log("log_message", user_id="u", session_id="s", role="user",
                                       content="", metadata=metadata_of(MIB)),
                       log("log_message", user_id="u", session_id="s", role="user",
                           content="", metadata=metadata_of(MIB + 1))),
    "metadata depth": ("metadata", log("log_message", user_id="u", session_id="s", role="user",
                                       content="", metadata=nested(100)),
                       log("log_message", user_id="u", session_id="s", role="user",
                           content="", metadata=nested(101))),
    "session metadata depth": ("metadata", log("create_session", user_id="u", session_id="s",
                                               metadata=nested(100)),
                               log("create_session", user_id="u", session_id="s",
                                   metadata=nested(101))),
    "model": ("model", log("log_message", user_id="u", session_id="s", role="user",
                           content="", model="m" * 255),
              log("log_message", user_id="u", session_id="s", role="user", content="",
                  model="m" * 256)),
    "interaction model": ("model", log("log_interaction", user_id="u", session_id="s",
                                       prompt="p", response="r", model="m" * 255),
                          log("log_interaction", user_id="u", session_id="s", prompt="p",
                              response="r", model="m" * 256)),
    "title": ("title", log("create_session", user_id="u", session_id="s", title="t" * 1000),
              log("create_session", user_id="u", session_id="s", title="t" * 1001)),
    "user_id": ("user_id", log("log_message", user_id="u" * 255, session_id="s", role="user",
                               content=""),
                log("log_message", user_id="u" * 256, session_id="s", role="user",
                    content="")),
    "session token": ("session_id", log("log_message", user_id="u", session_id="s" * 255,
                                        role="user", content=""),
                      log("log_message", user_id="u", session_id="s" * 256, role="user",
                          content="")),
    "client_message_id": ("client_message_id",
                          log("log_message", user_id="u", session_id="s", role="user",
                              content="", client_message_id="k" * 255),
                          log("log_message", user_id="u", session_id="s", role="user",
                              content="", client_message_id="k" * 256)),
    "event_type": ("event_type", log("store_behavioral_vector", user_id="u", session_id="s",
                                     vector=[1], event_type="e" * 255),
                   log("store_behavioral_vector", user_id="u", session_id="s", vector=[1],
                       event_type="e" * 256)),
    "decision metadata": ("metadata", log("store_auth_decision", user_id="u", session_id="s",
                                          decision="allow", metadata=metadata_of(MIB)),
                          log("store_auth_decision", user_id="u", session_id="s",
                              decision="allow", metadata=metadata_of(MIB + 1))),
    "batch elements": ("messages",
                       log("log_messages", messages=[{"user_id": "u", "session_id": "s",
                                                      "role": "user", "content": ""}] * 10000),
                       log("log_messages", messages=[{"user_id": "u", "session_id": "s",
                                                      "role": "user", "content": ""}] * 10001)),
}


@pytest.mark.parametrize("case", SIZES)
def test_each_size_bound_accepts_its_limit_and_refuses_one_more(
        case: str, connect_as: Callable[..., psycopg.Connection], db: psycopg.Connection) -> None:
    argument, (fn, at_bound), (_, over) = SIZES[case]
    service = connect_as("service_role")
    before = snapshot(db)
    with raises_sqlstate("22023", names=[argument]):
        call(service, fn, **over)
    assert snapshot(db) == before
    call(service, fn, **at_bound)
    assert snapshot(db) != before


def test_a_batch_bound_of_32_mib_accepts_its_limit_and_refuses_one_byte_more(
        connect_as: Callable[..., psycopg.Connection], db: psycopg.Connection) -> None:
    service = connect_as("service_role")
    before = snapshot(db)
    with raises_sqlstate("22023", names=["messages", "32 MiB"]):
        call(service, "log_messages", messages=batch_of(32 * MIB + 1))
    assert snapshot(db) == before
    rows = call(service, "log_messages", messages=batch_of(32 * MIB))
    assert [r["position"] for r in rows] == list(range(1, len(rows) + 1))


def test_an_authenticated_caller_meets_the_same_bounds(
        connect_as: Callable[..., psycopg.Connection], db: psycopg.Connection) -> None:
    bob = connect_as("authenticated")
    before = snapshot(db)
    with raises_sqlstate("22023", names=["metadata"]):
        call(bob, "log_message", session_id="s", role="user", content="", metadata=nested(101))
    with raises_sqlstate("22023", names=["title"]):
        call(bob, "create_session", session_id="s", title="t" * 1001)
    assert snapshot(db) == before


# --- a caller's temporary objects --------------------------------------------------------------

TEMPORARY_OBJECTS = """
    create domain pg_temp.text as pg_catalog.int4;
    create domain pg_temp.uuid as pg_catalog.int4;
    create domain pg_temp.jsonb as pg_catalog.int4;
    create table pg_temp.sessions (id int, user_id int, token int, message_count int);
    create table pg_temp.messages (id int);
"""


def a_conversation(conn: psycopg.Connection, user: Any) -> list[Any]:
    """A few calls whose results do not depend on ids or times."""
    keep = ("position", "content", "role", "metadata", "session_created", "user_created",
            "duplicate", "title", "token", "created", "deleted", "messages_deleted")

    def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k in keep} for row in rows]

    who = {} if user is OMIT else {"user_id": user}
    return [
        strip(call(conn, "create_session", **who, session_id="temp", title="t",
                   metadata={"a": [1]})),
        strip(call(conn, "log_message", **who, session_id="temp", role="user", content="hi",
                   metadata={"b": 2}, client_message_id="k")),
        strip(call(conn, "log_message", **who, session_id="temp", role="user", content="hi",
                   metadata={"b": 2}, client_message_id="k")),
        strip(call(conn, "log_messages", messages=[{**who, "session_id": "temp",
                                                    "role": "assistant", "content": "x"}])),
        strip(call(conn, "log_interaction", **who, session_id="temp", prompt="p", response="r")),
        strip(call(conn, "get_messages", **who, session_id="temp")),
        strip(call(conn, "list_sessions", **who)),
        strip(call(conn, "delete_session", **who, session_id="temp")),
    ]


@pytest.mark.parametrize("role", ["authenticated", "service_role"])
def test_a_callers_temporary_types_and_tables_change_nothing(
        role: str, connect_as: Callable[..., psycopg.Connection], fresh_dsn: str) -> None:
    """In a database of its own: a temporary schema is a catalog change."""
    user = OMIT if role == "authenticated" else BOB
    plain = a_conversation(connect_as(role, dsn=fresh_dsn), user)
    tricked = connect_as(role, dsn=fresh_dsn)
    tricked.execute(TEMPORARY_OBJECTS)
    # The caller's own unqualified names do resolve to its objects...
    assert tricked.execute("select pg_typeof('42'::text) operator(pg_catalog.<>)"
                           " 'pg_catalog.text'::pg_catalog.regtype as shadowed").fetchone()["shadowed"]
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        tricked.execute("select 'not a number'::text")
    # ...but not inside our functions.
    assert a_conversation(tricked, user) == plain


# --- row-level security, the second line -----------------------------------------------------

#: Definer functions with the bug the policies exist for: they trust an
#: argument for the user. Owned by sessionlog_owner, like ours.
BUGGY_FUNCTIONS = """
    create function sessionlog.buggy_read(target text) returns setof text
        security definer set search_path = pg_catalog, pg_temp language sql
        as 'select m.content from sessionlog.messages m where m.user_id = target';
    create function sessionlog.buggy_insert(target text, session uuid) returns void
        security definer set search_path = pg_catalog, pg_temp language sql
        as 'insert into sessionlog.messages (user_id, session_id, position, role, content)
            values (target, session, 99, ''user'', ''planted'')';
    create function sessionlog.buggy_update(target text) returns bigint
        security definer set search_path = pg_catalog, pg_temp language sql
        as 'with changed as (update sessionlog.messages set content = ''defaced''
                             where user_id = target returning 1)
            select count(*) from changed';
    create function sessionlog.buggy_delete(target text) returns bigint
        security definer set search_path = pg_catalog, pg_temp language sql
        as 'with gone as (delete from sessionlog.sessions where user_id = target returning 1)
            select count(*) from gone';
    alter function sessionlog.buggy_read(text) owner to sessionlog_owner;
    alter function sessionlog.buggy_insert(text, uuid) owner to sessionlog_owner;
    alter function sessionlog.buggy_update(text) owner to sessionlog_owner;
    alter function sessionlog.buggy_delete(text) owner to sessionlog_owner;
    grant execute on all functions in schema sessionlog to authenticated;
"""


def test_rls_keeps_a_buggy_definer_function_inside_the_callers_rows(fresh_dsn: str) -> None:
    """In a database of its own (conftest's fresh_dsn): it creates functions."""
    with psycopg.connect(fresh_dsn, autocommit=True, row_factory=dict_row) as owner:
        owner.execute(BUGGY_FUNCTIONS)
        diary = call_one(owner, "log_message", user_id=ALICE, session_id="diary", role="user",
                         content="secret")["session_id"]
        call(owner, "log_message", user_id=BOB, session_id="notes", role="user", content="his")
        before = snapshot(owner)
        with psycopg.connect(fresh_dsn, autocommit=True, row_factory=dict_row) as conn:
            with request(conn, '{"sub": "bob", "role": "authenticated"}'):
                # The function runs as sessionlog_owner, yet sees bob's rows only.
                assert conn.execute("select current_user").fetchone() == {"current_user":
                                                                          "authenticated"}
                assert conn.execute("select sessionlog.buggy_read('alice') as c").fetchall() == []
                assert [r["c"] for r in conn.execute(
                    "select sessionlog.buggy_read('bob') as c").fetchall()] == ["his"]
                assert conn.execute("select sessionlog.buggy_update('alice') as n"
                                    ).fetchone() == {"n": 0}
                assert conn.execute("select sessionlog.buggy_delete('alice') as n"
                                    ).fetchone() == {"n": 0}
            with raises_sqlstate("42501", names=["row-level security"], hint=False):
                with request(conn, '{"sub": "bob", "role": "authenticated"}'):
                    conn.execute("select sessionlog.buggy_insert('alice', %s)", [diary])
        assert snapshot(owner) == before
        # Called by the installer (a trusted caller) the same functions do
        # cross users: the bug is real, only the policies held it.
        with owner.transaction(force_rollback=True):
            assert [r["c"] for r in owner.execute(
                "select sessionlog.buggy_read('alice') as c").fetchall()] == ["secret"]
            assert owner.execute("select sessionlog.buggy_update('alice') as n"
                                 ).fetchone() == {"n": 1}
            owner.execute("select sessionlog.buggy_insert('alice', %s)", [diary])
