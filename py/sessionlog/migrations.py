"""Schema migrations (yoyo) and the re-application of the SQL functions.

    >>> from sessionlog import migrate
    >>> migrate("postgresql://app@localhost/app")          # doctest: +SKIP
    MigrationResult(applied=['0001_roles', '0002_core', '0003_strict_id_check'], functions=13)

Migrations under ``sql/migrations`` change the schema and are applied once;
the files under ``sql/functions`` are ``CREATE OR REPLACE`` and are applied
on every migrate, in one transaction, after the migrations. Everything runs
under a PostgreSQL advisory lock, so two processes migrating the same
database at once take turns instead of racing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import psycopg.sql
from psycopg.conninfo import conninfo_to_dict
from yoyo import get_backend, read_migrations

#: Schema of yoyo's bookkeeping tables; kept apart from the API and the data.
MIGRATIONS_SCHEMA = "sessionlog_migrations"
# pg_advisory_lock key: hashtext('sessionlog.migrate'), fixed so every client agrees.
_LOCK_KEY = 0x5E5510C6


@dataclass(frozen=True)
class MigrationResult:
    applied: list[str] = field(default_factory=list)
    functions: int = 0


@dataclass(frozen=True)
class MigrationStatus:
    applied: list[str]
    pending: list[str]
    functions_current: bool


def sql_dir() -> Path:
    """The directory holding ``migrations/`` and ``functions/``: inside the
    installed package (a wheel ships it there), else the repository's sql/."""
    packaged = Path(__file__).with_name("sql")
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "sql"


def function_files() -> list[Path]:
    # Private helpers (_*.sql) sort first, so they exist before their callers.
    return sorted((sql_dir() / "functions").glob("*.sql"))


def functions_sql() -> str:
    """All function files, concatenated in the order they are applied."""
    return "\n".join(path.read_text() for path in function_files())


def _functions_digest() -> str:
    return hashlib.sha256(functions_sql().encode()).hexdigest()


def _yoyo_uri(dsn: str) -> str:
    """A yoyo URI (psycopg 3 driver) for any libpq DSN, URI or key=value."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    dbname = params.pop("dbname", params.get("user", ""))
    params["schema"] = MIGRATIONS_SCHEMA
    return f"postgresql+psycopg:///{quote(dbname, safe='')}?{urlencode(params)}"


@contextmanager
def _migration_lock(dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", [_LOCK_KEY])
        try:
            yield conn
        finally:
            conn.execute("select pg_advisory_unlock(%s)", [_LOCK_KEY])


def _backend_and_migrations(dsn: str):
    backend = get_backend(_yoyo_uri(dsn))
    return backend, read_migrations(str(sql_dir() / "migrations"))


def migrate(dsn: str) -> MigrationResult:
    """Apply pending migrations, then (re)create every SQL function.

    Idempotent: a second run applies no migration and leaves the functions
    as they are. Ends with ``NOTIFY pgrst, 'reload schema'`` so that a
    running PostgREST sees the functions.
    """
    with _migration_lock(dsn) as conn:
        conn.execute(f"create schema if not exists {MIGRATIONS_SCHEMA}")
        backend, migrations = _backend_and_migrations(dsn)
        try:
            with backend.lock():
                pending = backend.to_apply(migrations)
                backend.apply_migrations(pending)
        finally:
            backend.connection.close()
        files = function_files()
        with conn.transaction():
            for path in files:
                conn.execute(path.read_text())
            conn.execute(
                f"comment on schema {MIGRATIONS_SCHEMA} is "
                + psycopg.sql.quote(f"functions sha256 {_functions_digest()}")
            )
            conn.execute("notify pgrst, 'reload schema'")
        return MigrationResult(applied=[m.id for m in pending], functions=len(files))


def rollback(dsn: str, count: int | None = None) -> list[str]:
    """Roll back the last ``count`` migrations (all of them when None)."""
    with _migration_lock(dsn) as conn:
        conn.execute(f"create schema if not exists {MIGRATIONS_SCHEMA}")
        backend, migrations = _backend_and_migrations(dsn)
        try:
            with backend.lock():
                applied = backend.to_rollback(migrations)
                if count is not None:
                    applied = applied[:count]
                backend.rollback_migrations(applied)
        finally:
            backend.connection.close()
        conn.execute("notify pgrst, 'reload schema'")
        return [m.id for m in applied]


def status(dsn: str) -> MigrationStatus:
    """Which migrations are applied and pending, and whether the functions
    in the database are those of this package."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "select to_regnamespace(%s) is not null, obj_description(to_regnamespace(%s), 'pg_namespace')",
            [MIGRATIONS_SCHEMA, MIGRATIONS_SCHEMA],
        ).fetchone()
    schema_exists, comment = row if row else (False, None)
    names = sorted(p.stem for p in (sql_dir() / "migrations").glob("*.sql") if not p.stem.endswith(".rollback"))
    if not schema_exists:
        return MigrationStatus(applied=[], pending=names, functions_current=False)
    backend, migrations = _backend_and_migrations(dsn)
    try:
        pending = {m.id for m in backend.to_apply(migrations)}
    finally:
        backend.connection.close()
    return MigrationStatus(
        applied=[n for n in names if n not in pending],
        pending=[n for n in names if n in pending],
        functions_current=comment == f"functions sha256 {_functions_digest()}",
    )


def ensure_migrated(dsn: str) -> MigrationResult | None:
    """Migrate unless the database is already current; None when it was."""
    current = status(dsn)
    if not current.pending and current.functions_current:
        return None
    return migrate(dsn)
