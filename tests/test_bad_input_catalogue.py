"""Runs every case of tests/bad_input_catalogue.py three ways: plain SQL
(``select * from fn(name => value)`` as a psql user writes it), the Python
shim ``SessionLog``, and ``SupabaseSessionLog`` over supabase-py against the
PostgREST stand-in (tests/postgrest_stub.py, as service_role). Each expects
its SQLSTATE / exception class / HTTP status, or the literal value stored,
and checks that nothing else changed: every row of every table is compared
before and after (a case that writes does it as a new user, removed after)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from supabase import create_client

from sessionlog import SessionLog, SupabaseSessionLog

from tests import test_isolation
from tests.bad_input_catalogue import (
    CASES,
    NEW,
    OTHER_USER,
    SEED_CONTENT,
    SEED_KEY,
    SEED_TOKEN,
    SEED_USER,
    SEED_UUID,
    WAYS,
    Case,
    ClientRefused,
    DeepMetadata,
    Empty,
    Refused,
    Stored,
)
from tests.helpers import TABLES, call
from tests.postgrest_stub import PostgrestStub, sign_jwt
from tests.test_client import snapshot
from tests.test_isolation import show_figures

SERVICE_KEY = sign_jwt({"role": "service_role", "iss": "supabase"})
INTEGER_PARAMS = ("tokens", "max_rows")

#: The module-scoped database fixture of test_isolation, shared.
module_dsn = test_isolation.module_dsn

FIGURES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    show_figures(request.config, "test_bad_input_catalogue", FIGURES)


@pytest.fixture(scope="module")
def seeded(module_dsn: str) -> Iterator[psycopg.Connection]:
    """The module's database with the catalogue's seed: u1 has a session by
    token (one message, key k1) and one by UUID; u2 exists."""
    with psycopg.connect(module_dsn, autocommit=True, row_factory=dict_row) as db:
        call(db, "log_message", user_id=SEED_USER, session_id=SEED_TOKEN, role="user",
             content=SEED_CONTENT, client_message_id=SEED_KEY)
        call(db, "create_session", user_id=SEED_USER, session_id=SEED_UUID)
        call(db, "create_session", user_id=OTHER_USER, session_id="theirs")
        yield db


@pytest.fixture(scope="module")
def seed_snapshot(seeded: psycopg.Connection) -> Any:
    return snapshot(seeded)


@pytest.fixture(scope="module")
def seed_rows(seeded: psycopg.Connection) -> dict[str, list[Any]]:
    """Every row of the seed, as JSON, to put it back after a case broke it."""
    return {table: [r["row"] for r in seeded.execute(
        sql.SQL("select to_jsonb(t) as row from {} t").format(
            sql.Identifier("sessionlog", table))).fetchall()] for table in TABLES}


def restore_seed(db: psycopg.Connection, rows: dict[str, list[Any]]) -> None:
    """The tables exactly as seeded (same ids, timestamps and counters)."""
    with db.transaction():
        db.execute("delete from sessionlog.users")  # everything hangs off users
        for table in TABLES:
            db.execute(sql.SQL("insert into {t} select * from jsonb_populate_recordset("
                               "null::{t}, %s)").format(t=sql.Identifier("sessionlog", table)),
                       [Jsonb(rows[table])])


def remove_case_users(db: psycopg.Connection) -> None:
    """Whatever a case wrote, always as a new user, goes."""
    db.execute("delete from sessionlog.users where id <> all(%s)", [[SEED_USER, OTHER_USER]])


@pytest.fixture(scope="module")
def supabase(module_dsn: str) -> Iterator[tuple[SupabaseSessionLog, list[int]]]:
    """SupabaseSessionLog as service_role, and the HTTP statuses it received."""
    statuses: list[int] = []
    with PostgrestStub(module_dsn) as api:
        client = create_client(api.url, SERVICE_KEY)
        client.postgrest.session.event_hooks["response"].append(
            lambda response: statuses.append(response.status_code))
        try:
            yield SupabaseSessionLog(client), statuses
        finally:
            client.postgrest.aclose()


# --- the three ways --------------------------------------------------------------------

def substitute(value: Any, user: str) -> Any:
    """The arguments with NEW replaced by ``user`` at any depth."""
    if value == NEW:
        return user
    if isinstance(value, dict):
        return {k: substitute(v, user) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, user) for v in value]
    return value


def python_value(value: Any) -> Any:
    """What the Python clients get: a DeepMetadata as the nested dict."""
    if isinstance(value, DeepMetadata):
        return value.value()
    if isinstance(value, dict):
        return {k: python_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [python_value(v) for v in value]
    return value


def array_literal(items: list[Any]) -> str:
    def one(x: Any) -> str:
        if x is None:
            return "NULL"
        if isinstance(x, list):
            return array_literal(x)
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "Infinity" if x > 0 else "-Infinity"
        return repr(float(x))
    return "{" + ",".join(one(x) for x in items) + "}"


def sql_value(name: str, value: Any) -> Any:
    """An argument as a psql user writes it: a vector as an array literal, an
    integer beyond int4 quoted (unquoted, PostgreSQL would look for a bigint
    overload: 42883), any JSON as jsonb (deep JSON sent as its text)."""
    if isinstance(value, DeepMetadata):
        text = value.text()
        return Jsonb(None, dumps=lambda _: text)
    if name == "vector" and isinstance(value, list):
        return array_literal(value)
    if name in INTEGER_PARAMS and isinstance(value, int) and not -2**31 <= value < 2**31:
        return str(value)
    if name in ("metadata", "messages") and value is not None:
        if isinstance(value, list):
            return Jsonb([python_value(v) for v in value])
        return Jsonb(python_value(value))
    return value


class Outcome:
    """What happened: rows, or an exception (with the HTTP status, if any)."""

    def __init__(self, rows: list[dict[str, Any]] | None = None,
                 error: BaseException | None = None, http: int | None = None) -> None:
        self.rows, self.error, self.http = rows, error, http

    @property
    def sqlstate(self) -> str | None:
        return getattr(self.error, "sqlstate", None)

    @property
    def message(self) -> str:
        if isinstance(self.error, psycopg.Error):
            return self.error.diag.message_primary or str(self.error)
        return getattr(self.error, "message", None) or str(self.error)


def as_rows(result: Any) -> list[dict[str, Any]]:
    import dataclasses

    if result is None:  # pop_message found nothing
        return []
    return [dataclasses.asdict(r) for r in (result if isinstance(result, list) else [result])]


def run(way: str, case: Case, args: dict[str, Any], db: psycopg.Connection,
        supabase: tuple[SupabaseSessionLog, list[int]]) -> Outcome:
    FIGURES["calls made"] += 1
    FIGURES[f"calls via {way}"] += 1
    try:
        if way == "sql":
            return Outcome(call(db, case.fn, **{k: sql_value(k, v) for k, v in args.items()}))
        if way == "shim":
            method = getattr(SessionLog.from_connection(db), case.fn)
            return Outcome(as_rows(method(**python_value(args))))
        log, statuses = supabase
        statuses.clear()
        try:
            result = getattr(log, case.fn)(**python_value(args))
        except Exception as exc:
            return Outcome(error=exc, http=statuses[-1] if statuses else None)
        return Outcome(as_rows(result), http=statuses[-1] if statuses else None)
    except Exception as exc:
        return Outcome(error=exc)


def target_user(args: dict[str, Any]) -> str:
    if "messages" in args:
        return args["messages"][0]["user_id"]
    return args["user_id"]


def stored_values(db: psycopg.Connection, expect: Stored, user: str) -> list[Any]:
    key = "id" if expect.table == "users" else "user_id"
    return [r["v"] for r in db.execute(
        sql.SQL("select {} as v from sessionlog.{} where {} = %s").format(
            sql.Identifier(expect.column), sql.Identifier(expect.table), sql.Identifier(key)),
        [user]).fetchall()]


def found_nothing(fn: str, rows: list[dict[str, Any]]) -> bool:
    if fn == "auth_decision_summary":
        return len(rows) == 4 and all(r["decisions"] == 0 for r in rows)
    if fn == "delete_session":
        return [r["deleted"] for r in rows] == [False]
    if fn == "forget_user":
        return [r["user_deleted"] for r in rows] == [False]
    if fn == "clear_messages":
        return [r["messages_deleted"] for r in rows] == [0]
    if fn == "prune_sessions":
        return [r["sessions_deleted"] for r in rows] == [0]
    return rows == []


def check(case: Case, way: str, outcome: Outcome, expect: Any, db: psycopg.Connection,
          args: dict[str, Any]) -> None:
    what = f"{case.id} via {way}"
    if isinstance(expect, Refused):
        assert outcome.error is not None, f"{what}: accepted, expected {expect.sqlstate}"
        assert outcome.sqlstate == expect.sqlstate, f"{what}: {outcome.error!r}"
        if way != "sql":
            assert isinstance(outcome.error, expect.error), f"{what}: {outcome.error!r}"
        if way == "supabase" and not (outcome.http is None and outcome.sqlstate == "22023"):
            # (no HTTP status: the adapter refused a size before sending, as the shim does)
            assert outcome.http == expect.http, f"{what}: HTTP {outcome.http}"
        for name in expect.names:
            assert name in outcome.message, f"{what}: {name!r} not in {outcome.message!r}"
        FIGURES[f"refused {expect.sqlstate}"] += 1
    elif isinstance(expect, ClientRefused):
        assert isinstance(outcome.error, expect.exception), f"{what}: {outcome.error!r}"
        assert expect.match in str(outcome.error), f"{what}: {outcome.error!r}"
        FIGURES["refused by the client"] += 1
    elif isinstance(expect, Stored):
        assert outcome.error is None, f"{what}: {outcome.error!r}"
        if way == "supabase":
            assert outcome.http == 200
        value = expect.value.value() if isinstance(expect.value, DeepMetadata) else expect.value
        assert value in stored_values(db, expect, target_user(args)), f"{what}: not stored as is"
        FIGURES["stored literally"] += 1
    else:
        assert isinstance(expect, Empty)
        assert outcome.error is None, f"{what}: {outcome.error!r}"
        if way == "supabase":
            assert outcome.http == 200
        assert found_nothing(case.fn, outcome.rows), f"{what}: {outcome.rows!r}"
        FIGURES["found nothing"] += 1


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_catalogue_case(request: pytest.FixtureRequest, seeded: psycopg.Connection,
                        seed_snapshot: Any, seed_rows: dict[str, list[Any]],
                        supabase: tuple[SupabaseSessionLog, list[int]],
                        case: Case, way: str) -> None:
    expect = case.outcome(way)
    if expect is None:
        pytest.skip(f"{way} cannot express this call")
    reason = case.xfail_reason(way)
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    db = seeded
    args = substitute(case.args, f"catalogue-{way}-{CASES.index(case)}")
    before = snapshot(db)
    try:
        outcome = run(way, case, args, db, supabase)
        if not isinstance(expect, Stored):
            assert snapshot(db) == before, f"{case.id} via {way}: a table changed"
            FIGURES["no table changed"] += 1
        check(case, way, outcome, expect, db, args)
        if isinstance(expect, Stored):
            # Stored as its new user, and nothing else: without that user's
            # rows, every table is as it was.
            remove_case_users(db)
            assert snapshot(db) == before, f"{case.id} via {way}: wrote outside its new user"
            FIGURES["nothing else changed"] += 1
    finally:
        # The next case starts from the seed whatever this one did, so that
        # one broken case fails alone instead of every case after it.
        remove_case_users(db)
        if snapshot(db) != seed_snapshot:
            restore_seed(db, seed_rows)


def test_the_catalogue_covers_every_public_function_with_at_least_60_cases(
        seeded: psycopg.Connection) -> None:
    functions = {r["proname"] for r in seeded.execute(
        "select proname from pg_proc where pronamespace = 'public'::regnamespace").fetchall()}
    assert {case.fn for case in CASES} == functions
    assert len(CASES) >= 60
    kinds = Counter(type(case.expect).__name__ for case in CASES)
    assert kinds["Refused"] >= 60 and kinds["Stored"] >= 20 and kinds["Empty"] >= 5, kinds


#: Every text parameter of every public function, read from the catalog so
#: that a new one cannot be forgotten; a batch's elements have log_message's.
TEXT_PARAMETERS = """
    select p.proname as fn, a.name
    from pg_catalog.pg_proc p
    cross join lateral unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]), p.proargnames,
                              coalesce(p.proargmodes, array_fill('i'::"char", array[p.pronargs])))
        as a(type, name, mode)
    where p.pronamespace = 'public'::regnamespace and a.mode in ('i', 'b')
      and a.type = 'text'::regtype
"""


def text_arguments(db: psycopg.Connection) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in db.execute(TEXT_PARAMETERS).fetchall():
        found.setdefault(row["fn"], set()).add(row["name"])
    found["log_messages"] = set(found["log_message"])
    return found


def test_every_text_argument_gets_a_hostile_string(seeded: psycopg.Connection) -> None:
    """SQL injection and odd Unicode go into every text argument of every
    function (stored literally or refused clearly)."""
    from tests.bad_input_catalogue import INJECTION, NASTY

    def hostile(case: Case) -> set[str]:
        messages = case.args.get("messages")
        every = messages if isinstance(messages, list) else [case.args]
        return {k for args in every for k, v in args.items()
                if isinstance(v, str) and (INJECTION in v or NASTY in v)}

    covered: dict[str, set[str]] = {}
    for case in CASES:
        covered.setdefault(case.fn, set()).update(hostile(case))
    arguments = text_arguments(seeded)
    assert len(arguments) >= 13 and "user_id" in arguments["log_message"]  # the query reads them
    missing = {fn: names - covered.get(fn, set()) for fn, names in arguments.items()}
    assert all(not m for m in missing.values()), {fn: m for fn, m in missing.items() if m}
