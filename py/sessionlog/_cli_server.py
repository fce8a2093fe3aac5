"""The database and the server: migrate, status, server start/stop/status/url,
sql bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from psycopg import sql

from . import _cli_output as out
from . import embedded, migrations
from ._cli_common import State, command, group, pass_state, quiet


@command()
@pass_state
def migrate(state: State) -> None:
    """Apply pending migrations and (re)create the functions.

    Idempotent, and safe when two processes run it at once.

    \b
    Example:
      sessionlog --dsn postgresql://app@db/app migrate
    """
    result = migrations.migrate(state.dsn(migrate=False))

    def human() -> None:
        out.echo_pairs([
            ("applied", ", ".join(result.applied) or "nothing (no migration pending)"),
            ("functions", f"{result.functions} files applied"),
        ])

    state.emit({"applied": result.applied, "functions": result.functions}, human)


@command()
@pass_state
def status(state: State) -> None:
    """Show migration state, server version and row counts.

    Lists applied and pending migrations, whether the SQL functions are those
    of this version, and the rows of every table. Does not migrate (the embedded server is started if needed).

    \b
    Example:
      sessionlog status
    """
    dsn = state.dsn(migrate=False)
    current = migrations.status(dsn)
    conn = state.connect(migrate=False)

    def scalar(query: str | sql.Composed) -> Any:
        row = conn.execute(query).fetchone()
        return row[0] if row else None

    version = scalar("show server_version")
    tables = [row[0] for row in conn.execute(
        "select c.relname from pg_catalog.pg_class c"
        " join pg_catalog.pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'sessionlog' and c.relkind in ('r', 'p') order by 1")]
    counts = {
        name: scalar(sql.SQL("select count(*) from {}").format(sql.Identifier("sessionlog", name)))
        for name in tables
    }
    data = {
        "applied": current.applied,
        "pending": current.pending,
        "functions_current": current.functions_current,
        "server_version": version,
        "tables": counts,
    }

    def human() -> None:
        out.echo_pairs([
            ("server version", version),
            ("applied", ", ".join(current.applied) or "none"),
            ("pending", ", ".join(current.pending) or "none"),
            ("functions", "current" if current.functions_current
             else "not current (run: sessionlog migrate)"),
            *((f"rows in {name}", count) for name, count in counts.items()),
        ])

    state.emit(data, human)


# --- embedded server ----------------------------------------------------------

@group()
def server() -> None:
    """Start, stop or locate the embedded PostgreSQL server.

    \b
    Examples:
      sessionlog server start
      psql "$(sessionlog server url)"
      sessionlog server stop
    """


def _data_dir(state: State) -> Path:
    return state.data_dir or embedded.default_data_dir()


@server.command("start")
@pass_state
def server_start(state: State) -> None:
    """Start the embedded server (initialized and migrated on first use).

    \b
    Example:
      sessionlog --data-dir /srv/sessionlog/pgdata server start
    """
    with quiet():
        uri = embedded.start(state.data_dir)
    applied = migrations.ensure_migrated(uri)
    migrated = applied.applied if applied else []
    data = {"running": True, "data_dir": str(_data_dir(state)), "uri": uri, "migrated": migrated}
    state.emit(data, lambda: out.echo_pairs([
        ("running", True), ("data_dir", data["data_dir"]), ("uri", uri),
        ("migrated", ", ".join(migrated) or "nothing (already current)"),
    ]))


@server.command("stop")
@pass_state
def server_stop(state: State) -> None:
    """Stop the embedded server (its data stays in the data directory).

    \b
    Example:
      sessionlog server stop
    """
    with quiet():
        stopped = embedded.stop(state.data_dir)
    data = {"stopped": stopped, "data_dir": str(_data_dir(state))}
    state.emit(data, lambda: click.echo("stopped" if stopped else "not running"))


@server.command("status")
@pass_state
def server_status(state: State) -> None:
    """Tell whether the embedded server runs, and where.

    Prints running, the data directory and the URI.

    \b
    Example:
      sessionlog server status
    """
    with quiet():
        uri = embedded.uri(state.data_dir)
    data = {"running": uri is not None, "data_dir": str(_data_dir(state)), "uri": uri}
    state.emit(data, lambda: out.echo_pairs(data.items()))


@server.command("url")
@pass_state
def server_url(state: State) -> None:
    """Print the connection URI of the embedded server, for psql.

    Starts (and on first use migrates) the server when it is not running, so
    that psql "$(sessionlog server url)" always reaches it. The server
    listens on a Unix socket only and trusts it: no password is asked (any
    is accepted), the socket's directory is the door.

    \b
    Example:
      psql "$(sessionlog server url)"
    """
    with quiet():
        uri = embedded.start(state.data_dir)
    migrations.ensure_migrated(uri)
    state.emit({"uri": uri}, lambda: click.echo(uri))


# --- SQL bundle -------------------------------------------------------------------

@group("sql")
def sql_group() -> None:
    """SQL scripts for psql and the Supabase SQL editor.

    \b
    Example:
      sessionlog sql bundle > sessionlog.sql
    """


@sql_group.command("bundle")
@pass_state
def sql_bundle(state: State) -> None:
    """Print the schema and functions as one idempotent SQL script.

    For psql -f, the Supabase SQL editor, or a file in supabase/migrations.
    Needs no database. The script keeps the same books as `sessionlog
    migrate` (yoyo's tables in schema sessionlog_migrations): each migration
    is wrapped in a DO block that runs it only if it is not recorded yet and
    then records it, in one transaction, under migrate's advisory lock. So
    it applies cleanly to an empty database, again after that, after an
    upgrade, and to a database set up by `sessionlog migrate` (which can
    take over later). The roles anon, authenticated and service_role are
    created NOLOGIN only when missing; the functions are create or replace;
    the script ends with NOTIFY pgrst, 'reload schema'.

    \b
    Examples:
      sessionlog sql bundle > sessionlog.sql
      psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sessionlog.sql
      sessionlog sql bundle > supabase/migrations/20250101000000_sessionlog.sql
    """
    from ._cli_bundle import bundle

    text = bundle()
    if state.json:
        out.echo_json({"sql": text})
    else:
        click.echo(text, nl=False)


COMMANDS = [migrate, status, server, sql_group]
