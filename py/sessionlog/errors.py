"""One exception hierarchy, mapped from SQLSTATE.

psql, psycopg and PostgREST all see the same SQLSTATE, so every adapter
raises the same classes::

    try:
        log.log_message(user_id="u1", session_id="chat-1", role="robot", content="hi")
    except InvalidArgument as exc:
        print(exc.sqlstate, exc.message, exc.hint)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from .router import remote_error, shard_unreachable


class SessionLogError(Exception):
    """Base class: any error raised by a sessionlog call.

    ``sqlstate`` is the PostgreSQL SQLSTATE (or PostgREST code such as
    ``PGRST202``), ``None`` when the server never answered.
    """

    sqlstate: str | None
    message: str
    detail: str | None
    hint: str | None

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.message} (hint: {self.hint})" if self.hint else self.message
        return " ".join(text.splitlines())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sqlstate={self.sqlstate!r}, message={self.message!r})"


class InvalidArgument(SessionLogError):
    """22xxx: a bad argument (empty or oversized id, unknown role, bad vector…)."""


class NotOwner(SessionLogError):
    """42501: the session belongs to another user, or the caller may not act
    for this user (also: permission denied for the function)."""


class IdempotencyConflict(SessionLogError):
    """23505: a ``client_message_id`` reused with a different payload."""


class SerializationFailure(SessionLogError):
    """40001 / 40P01: a serialization failure or deadlock (retried when safe)."""


class ConnectionFailed(SessionLogError):
    """08xxx, or no connection at all (server unreachable, pool timeout)."""


class NotInstalled(SessionLogError):
    """The database has no sessionlog (or an older one without this
    function): the clients raise it for 42883 when the function is not there
    at all (not for a wrong argument type), and for PostgREST's PGRST202."""


INSTALL_HINT = ("install sessionlog there with: sessionlog --dsn <this database> migrate, "
                "or run the script printed by: sessionlog sql bundle "
                "(psql -f, or the Supabase SQL editor)")


def not_installed(message: str, sqlstate: str | None, detail: str | None = None) -> NotInstalled:
    """``function public.log_message(...) does not exist`` said plainly."""
    return NotInstalled(f"sessionlog is not installed in this database, or is older than "
                        f"this client ({message})", sqlstate=sqlstate, detail=detail,
                        hint=INSTALL_HINT)


_EXACT: dict[str, type[SessionLogError]] = {
    "42501": NotOwner,
    "23505": IdempotencyConflict,
    "40001": SerializationFailure,
    "40P01": SerializationFailure,
    # The server ended the session (pg_terminate_backend, shutdown, crash,
    # still starting): the connection is gone, as with an 08xxx.
    "57P01": ConnectionFailed,
    "57P02": ConnectionFailed,
    "57P03": ConnectionFailed,
}
_CLASS: dict[str, type[SessionLogError]] = {
    "22": InvalidArgument,
    "08": ConnectionFailed,
}


def error_class(sqlstate: str | None) -> type[SessionLogError]:
    """The exception class for a SQLSTATE (``SessionLogError`` if unmapped)."""
    if not sqlstate or len(sqlstate) != 5:  # e.g. PGRST202 or an HTTP status
        return SessionLogError
    return _EXACT.get(sqlstate) or _CLASS.get(sqlstate[:2], SessionLogError)


def from_sqlstate(
    sqlstate: str | None,
    message: str,
    detail: str | None = None,
    hint: str | None = None,
) -> SessionLogError:
    """``from_sqlstate("22023", "unknown role: robot")`` -> InvalidArgument."""
    if shard_unreachable(sqlstate, message):  # a router's shard is down
        return ConnectionFailed(message, sqlstate=sqlstate, detail=detail, hint=hint)
    message, detail, hint = remote_error(message, detail, hint)  # relayed by a router
    return error_class(sqlstate)(message, sqlstate=sqlstate, detail=detail, hint=hint)


def from_psycopg(exc: psycopg.Error) -> SessionLogError:
    """Map a psycopg error, reading its diagnostics (``exc.diag``)."""
    diag = exc.diag
    sqlstate = diag.sqlstate or exc.sqlstate
    message = diag.message_primary or str(exc).strip() or type(exc).__name__
    if sqlstate is None and isinstance(exc, psycopg.OperationalError):
        # connection refused, authentication failed, pool timeout or closed
        return ConnectionFailed(message)
    if sqlstate is None and isinstance(exc, psycopg.DataError):
        # refused by psycopg before sending, e.g. a NUL byte in a text argument
        return InvalidArgument(message)
    return from_sqlstate(sqlstate, message, diag.message_detail, diag.message_hint)


def from_postgrest(error: Any) -> SessionLogError:
    """Map a postgrest ``APIError`` or an error body ``{code, message, details, hint}``."""
    def get(key: str) -> Any:
        return error.get(key) if isinstance(error, Mapping) else getattr(error, key, None)

    details = get("details")
    return from_sqlstate(
        get("code"),
        get("message") or str(error),
        None if details is None else str(details),
        get("hint"),
    )
