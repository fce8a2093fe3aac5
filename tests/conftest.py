"""Every test runs against a real PostgreSQL: one server per test session
(tests/pgserver.py) and a template database migrated once.

Databases, cheapest first:
- ``dsn`` / ``db``: the shared database, a copy of the template that tests
  take in turn. Before each test its tables are emptied over a connection
  kept open for that (a cascading DELETE, ~0.1 ms, or TRUNCATE when large;
  a fresh copy costs ~0.05-0.3 s), so a test starts from the migrated,
  empty schema. A test that changes the catalog anyway (creates or alters
  a table, function, role grant, extension, …) is detected when it ends:
  the shared database is dropped and the next test gets a new copy, and a
  ``SharedDatabaseChanged`` warning names the test so it can move to
  ``fresh_dsn``.
- ``fresh_dsn`` / ``fresh_db``: a brand-new copy of the template for this
  test alone, dropped afterwards. For tests that change the schema, roles
  or privileges, or that count calls or read per-database statistics.
- ``module_dsn`` (tests/test_isolation.py): one copy per module, for tests
  that keep their data apart by fresh UUIDs.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from pytest_postgresql import factories

from sessionlog.migrations import migrate
from tests.helpers import TABLES
from tests.pgserver import TestServer

#: Timeouts (seconds) of pytest-timeout: every test has one. The default
#: (pyproject's ``timeout``) covers ordinary tests; long variants get more.
LONG_TEST_TIMEOUT = 1200


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="run the long variants too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    long_run = config.getoption("--long")
    skip_long = pytest.mark.skip(reason="long variant or benchmark smoke: run with --long")
    for item in items:
        if "long" not in item.keywords and "bench" not in item.keywords:
            continue
        if not long_run:
            item.add_marker(skip_long)
        elif item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(LONG_TEST_TIMEOUT))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """With SESSIONLOG_TEST_FORBID_SKIPS=word,… (CI's PostgreSQL 15 pass),
    a test skipped for a reason naming one of those words fails instead:
    CI installed what it needs, so the skip would hide a broken install."""
    report = yield
    forbidden = [w for w in os.environ.get("SESSIONLOG_TEST_FORBID_SKIPS", "").split(",") if w]
    if forbidden and report.skipped and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2]
        if any(word in reason for word in forbidden):
            report.outcome = "failed"
            report.longrepr = f"skipped, but SESSIONLOG_TEST_FORBID_SKIPS forbids it: {reason}"
    return report


_server = TestServer()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TestServer]:
    _server.start()
    try:
        yield _server
    finally:
        _server.stop()


def _load_schema(host: str, port: int, user: str, dbname: str, **_: object) -> None:
    migrate(f"host={host} port={port} user={user} dbname={dbname}")


postgresql_noproc = factories.postgresql_noproc(
    host=str(_server.socket_dir), port=_server.port, user="postgres",
    load=[_load_schema], depends_on=None,
)


@pytest.fixture(scope="session")
def migrated_server(pg_server: TestServer, postgresql_noproc):  # noqa: ANN001
    """The test server once the template database is migrated (its name:
    ``migrated_server.template_dbname``)."""
    return postgresql_noproc


class SharedDatabaseChanged(UserWarning):
    """A test changed the catalog of the shared database (use fresh_dsn)."""


#: Catalogs whose rows make up the schema, roles and privileges a test sees.
#: Any insert, update or delete leaves its mark in (row count, newest xmin).
_WATCHED_CATALOGS = (
    "pg_namespace", "pg_class", "pg_attribute", "pg_attrdef", "pg_constraint",
    "pg_index", "pg_proc", "pg_type", "pg_trigger", "pg_policy", "pg_rewrite",
    "pg_extension", "pg_default_acl", "pg_event_trigger", "pg_operator", "pg_cast",
    "pg_publication", "pg_authid", "pg_auth_members", "pg_db_role_setting",
)
#: Shared by every database of the cluster: a test on another database changes
#: them between two tests of the shared one (migrating a database grants the
#: owner role again), so they are read again before each test.
_CLUSTER_CATALOGS = ("pg_authid", "pg_auth_members", "pg_db_role_setting")


def _fingerprint_of(tables: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(" union all ").join(
        sql.SQL("select {name}, count(*), max(xmin::text::bigint) from pg_catalog.{table}"
                ).format(name=sql.Literal(table), table=sql.Identifier(table))
        for table in tables)


_FINGERPRINT = _fingerprint_of(_WATCHED_CATALOGS)
_CLUSTER_FINGERPRINT = _fingerprint_of(_CLUSTER_CATALOGS)
_TRUNCATE = sql.SQL("truncate {}").format(sql.SQL(", ").join(
    sql.Identifier("sessionlog", table) for table in TABLES))
#: Below this many messages a cascading DELETE from users (~1 ms) empties
#: the tables faster than TRUNCATE (~50 ms: new files for every table and
#: index) and leaves the catalog alone; above it, TRUNCATE.
_DELETE_UP_TO = 5000
_MANY_ROWS = sql.SQL("select count(*) > {n} from (select from sessionlog.messages limit {n} + 1) m"
                     ).format(n=sql.Literal(_DELETE_UP_TO))


class DatabaseCopies:
    """Copies of the migrated template: fresh ones, and the shared one."""

    def __init__(self, server: TestServer, template: str) -> None:
        self.server = server
        self.template = template
        self.shared: str | None = None
        self.shared_catalog: dict[str, tuple] = {}
        # Kept open on the shared copy: emptying it and reading its catalog
        # between tests then costs no connection (~1.6 ms each).
        self._keeper: psycopg.Connection | None = None

    def create(self, purpose: str) -> str:
        name = f"sessionlog_{purpose}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.server.dsn(), autocommit=True) as admin:
            admin.execute(sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(self.template)))
        return name

    def drop(self, name: str) -> None:
        with psycopg.connect(self.server.dsn(), autocommit=True) as admin:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(name)))

    def take_shared(self) -> str:
        """The shared database, its tables emptied."""
        if self.shared is not None:
            try:
                self._empty()
                self.shared_catalog.update(
                    (row[0], row) for row in self._keeper_execute(_CLUSTER_FINGERPRINT))
                return self.shared
            except psycopg.Error:
                # Could not empty it in time (say a lock held by something a
                # failed test left behind): start again from a new copy.
                self.drop_shared()
        self.shared = self.create("shared")
        self.shared_catalog = self._fingerprint()
        return self.shared

    def _keeper_execute(self, query: sql.Composable | str) -> psycopg.Cursor:
        """``query`` on the kept connection; on a new one if a test terminated
        it (fault tests kill every backend of the database)."""
        try:
            return self._keeper_connection().execute(query)
        except psycopg.OperationalError:
            if self._keeper is None or not self._keeper.broken:
                raise
            self._keeper.close()
            return self._keeper_connection().execute(query)

    def _keeper_connection(self) -> psycopg.Connection:
        assert self.shared is not None
        if self._keeper is None or self._keeper.closed:
            self._keeper = psycopg.connect(
                self.server.dsn(self.shared), autocommit=True,
                options="-c lock_timeout=5s -c statement_timeout=30s")
        return self._keeper

    def _empty(self) -> None:
        # Connections a finished test left open go, as a dropped database's
        # would; the DELETE below waits for their locks until they are gone.
        self._keeper_execute("select pg_terminate_backend(pid) from pg_stat_activity"
                             " where datname = current_database() and pid <> pg_backend_pid()")
        if self._keeper_execute(_MANY_ROWS).fetchone()[0]:
            self._keeper_execute(_TRUNCATE)  # rewrites pg_class rows: fingerprint again
            self.shared_catalog = self._fingerprint()
        else:
            # Everything hangs off users (ON DELETE CASCADE).
            self._keeper_execute("delete from sessionlog.users")

    def shared_changes(self) -> list[str]:
        """The catalogs of the shared database the last test changed."""
        try:
            now = self._fingerprint()
        except psycopg.Error:
            return ["the database itself"]  # e.g. dropped or renamed: do not reuse it
        return [name for name, row in now.items() if row != self.shared_catalog[name]]

    def _fingerprint(self) -> dict[str, tuple]:
        return {row[0]: row for row in self._keeper_execute(_FINGERPRINT)}

    def drop_shared(self) -> None:
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None
        if self.shared is not None:
            name, self.shared = self.shared, None
            self.drop(name)


@pytest.fixture(scope="session")
def database_copies(pg_server: TestServer, migrated_server) -> Iterator[DatabaseCopies]:  # noqa: ANN001
    copies = DatabaseCopies(pg_server, migrated_server.template_dbname)
    try:
        yield copies
    finally:
        copies.drop_shared()


@pytest.fixture
def dsn(request: pytest.FixtureRequest, database_copies: DatabaseCopies) -> Iterator[str]:
    """DSN of the shared, migrated database, its tables empty at the start of
    the test. Only data may change here; a test that changes the schema,
    roles or privileges takes ``fresh_dsn``."""
    name = database_copies.take_shared()
    yield database_copies.server.dsn(name)
    changed = database_copies.shared_changes()
    if changed:
        database_copies.drop_shared()
        warnings.warn(SharedDatabaseChanged(
            f"{request.node.nodeid} changed the shared database ({', '.join(changed)}):"
            " a test that changes the schema, roles or privileges uses fresh_dsn / fresh_db"))


@pytest.fixture
def fresh_dsn(database_copies: DatabaseCopies) -> Iterator[str]:
    """DSN of a brand-new copy of the migrated template, for this test alone
    (dropped afterwards): for tests that change the schema, roles or
    privileges, or count calls."""
    name = database_copies.create("fresh")
    try:
        yield database_copies.server.dsn(name)
    finally:
        database_copies.drop(name)


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection (dict rows) to the shared database, as the owner."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def fresh_db(fresh_dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection (dict rows) to this test's own fresh database."""
    with psycopg.connect(fresh_dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn
