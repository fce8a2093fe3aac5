"""Every test runs against a real PostgreSQL: one server per test session
(tests/pgserver.py), a template database migrated once, and a fresh copy of
it for each test (pytest-postgresql's noproc factory)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row
from pytest_postgresql import factories

from sessionlog.migrations import migrate
from tests.pgserver import TestServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="run the long variants too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--long"):
        return
    skip_long = pytest.mark.skip(reason="long variant: run with --long")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip_long)


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
    return postgresql_noproc


postgresql = factories.postgresql("migrated_server")


@pytest.fixture
def dsn(postgresql: psycopg.Connection) -> str:
    """DSN of this test's fresh, migrated database."""
    info = postgresql.info
    return f"host={info.host} port={info.port} user={info.user} dbname={info.dbname}"


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection (dict rows) to this test's database, as the owner."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn
