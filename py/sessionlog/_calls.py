"""What every adapter shares: the table of SQL functions, the statement and
argument preparation, the result conversion, the retry policy, and the sync
method set (``SessionLog`` and ``SupabaseSessionLog`` inherit it).

Each method passes its arguments (``locals()``) to ``self._call(name, args)``;
arguments left at ``None`` are not sent, so the SQL side applies its default.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.conninfo
from psycopg import sql
from psycopg.types.json import Jsonb

from . import errors
from .results import (
    AuthDecision,
    BehavioralVector,
    DecisionSummary,
    DecisionStored,
    InteractionLogged,
    Message,
    MessageLogged,
    MessagesCleared,
    Result,
    Session,
    SessionCreated,
    SessionDeleted,
    SessionsPruned,
    UserForgotten,
    VectorStored,
)

JSONB_PARAMS = frozenset({"metadata", "messages"})
VECTOR_PARAMS = frozenset({"vector"})


@dataclass(frozen=True, slots=True)
class Call:
    """One SQL function ``public.<name>``: parameters in order, result shape."""

    name: str
    params: tuple[str, ...]
    result: type[Result]
    listing: bool = False


CALLS: dict[str, Call] = {c.name: c for c in (
    Call("create_session", ("user_id", "session_id", "title", "metadata"), SessionCreated),
    Call("log_message", ("user_id", "session_id", "role", "content", "model", "tokens",
                         "metadata", "client_message_id"), MessageLogged),
    Call("log_messages", ("messages",), MessageLogged, listing=True),
    Call("log_interaction", ("user_id", "session_id", "prompt", "response", "model", "tokens",
                             "metadata", "client_message_id"), InteractionLogged),
    Call("store_behavioral_vector", ("user_id", "session_id", "vector", "event_type",
                                     "metadata"), VectorStored),
    Call("store_auth_decision", ("user_id", "session_id", "decision", "confidence",
                                 "risk_score", "risk_level", "metadata"), DecisionStored),
    Call("get_behavioral_vectors", ("session_id", "user_id", "max_rows"), BehavioralVector,
         listing=True),
    Call("get_auth_decisions", ("session_id", "user_id", "max_rows"), AuthDecision,
         listing=True),
    Call("get_messages", ("session_id", "user_id", "after_position", "max_rows",
                          "before_position", "latest"), Message, listing=True),
    Call("pop_message", ("session_id", "user_id"), Message, listing=True),
    Call("clear_messages", ("session_id", "user_id"), MessagesCleared),
    Call("update_session", ("session_id", "user_id", "title", "metadata"), Session),
    Call("list_sessions", ("user_id", "max_rows", "before"), Session, listing=True),
    Call("auth_decision_summary", ("user_id", "since", "until"), DecisionSummary, listing=True),
    Call("delete_session", ("session_id", "user_id"), SessionDeleted),
    Call("forget_user", ("user_id",), UserForgotten),
    Call("prune_sessions", ("inactive_before", "user_id", "max_sessions"), SessionsPruned),
)}


# --- arguments -------------------------------------------------------------

def _json_default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_dumps = functools.partial(json.dumps, default=_json_default)


def _jsonable(value: Any) -> Any:
    """UUIDs and datetimes (at any depth) as strings, tuples as lists."""
    return json.loads(_dumps(value))


def _given(call: Call, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments not left at None; UUIDs as text, vectors as floats."""
    given = {}
    for name in call.params:
        value = args.get(name)
        if value is None:
            continue
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif name in VECTOR_PARAMS:
            value = [float(x) for x in value]
        given[name] = value
    check_sizes(call.name, given)
    return given


# --- sizes (DESIGN.md "Sizes are bounded") ---------------------------------
# The server refuses the same with 22023; checking here first means an
# oversized value is never serialized nor sent (a 300 MB content used to travel
# in full before the server said no), and a NUL byte or a lone surrogate, which
# cannot be sent at all, gets the same error as any other bad argument.

MAX_TEXT = 1_048_576  # content, prompt, response: characters
MAX_ID = 255  # user_id, session_id (a token), client_message_id, model, event_type
MAX_TITLE = 1000
MAX_METADATA = 1_048_576  # characters of the JSON text
MAX_DEPTH = 100  # levels of nested objects and arrays in metadata
MAX_BATCH = 10_000  # log_messages elements
MAX_BATCH_SIZE = 32 * 1_048_576  # log_messages, characters of the JSON text

_TEXT_LIMITS = {
    "content": (MAX_TEXT, "text of at most 1 MiB (1,048,576 characters); the empty string is allowed"),
    "prompt": (MAX_TEXT, "text of at most 1 MiB (1,048,576 characters); the empty string is allowed"),
    "response": (MAX_TEXT, "text of at most 1 MiB (1,048,576 characters); the empty string is allowed"),
    "title": (MAX_TITLE, "text of at most 1000 characters"),
    "model": (MAX_ID, "text of at most 255 characters"),
}
# Identifiers are trimmed by the server before their length is checked.
_ID_PARAMS = frozenset({"user_id", "session_id", "client_message_id", "event_type"})
_ID_HINT = ("text of 1 to 255 characters without control characters, "
            "e.g. a UUID, 'test-user-123' or 'user_2abc'")
_LIMITS = {name: limit for name, (limit, _) in _TEXT_LIMITS.items()} | dict.fromkeys(
    _ID_PARAMS, MAX_ID)


def _refuse(argument: str, value: Any, problem: str, hint: str) -> errors.InvalidArgument:
    """The server's wording: invalid <argument> '<value…>': <problem>."""
    shown = "NULL" if value is None else repr(str(value)[:60]) + ("..." if len(str(value)) > 60 else "")
    return errors.InvalidArgument(f"invalid {argument} {shown}: {problem}", sqlstate="22023",
                                  hint=hint)


def _check_chars(argument: str, value: str) -> None:
    """No NUL (PostgreSQL text cannot hold it) and no lone surrogate (not
    encodable as UTF-8). Both tests run at C speed: a regular expression over
    a 1 MiB text costs ~35 ms, ``in`` and ``encode`` ~1 ms."""
    bad = value.find("\x00")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.start if bad < 0 else min(bad, exc.start)
    if bad < 0:
        return
    char = value[bad]
    what = "a NUL byte (\\x00)" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
    raise _refuse(argument, value[:bad], f"contains {what} at character {bad}",
                  f"{argument} must be valid Unicode text without NUL; remove the character, "
                  "or decode the bytes it came from with errors='replace'")


def _check_text(argument: str, name: str, value: str) -> None:
    """Refuse ``value`` if it is too long for ``name`` or has a bad character."""
    limit, hint = _TEXT_LIMITS.get(name) or (MAX_ID, _ID_HINT)
    size = len(value)
    if size > limit and name in _ID_PARAMS:
        size = len(value.strip())  # the server trims ids first
    if size > limit:
        raise _refuse(argument, value, f"has {size} characters, at most {limit} are allowed",
                      f"{argument} is {hint}")
    _check_chars(argument, value)


def _json_size(argument: str, value: Any, budget: int, depth: int = 1) -> int:
    """A lower bound of the characters of ``value`` as JSON text, walking it
    once (no copy) and stopping as soon as ``budget`` is passed; checks the
    depth and every string on the way. Escapes only add characters, so a value
    refused here is also too large for the server."""
    kind = type(value)
    if kind is str:
        if "\x00" in value or not value.isascii():
            _check_chars(argument, value)
        return len(value) + 2
    if kind is dict:
        pairs: Any = value.items()
    elif kind is list or kind is tuple:
        pairs = None
    elif value is None or kind is bool or kind is int or kind is float:
        return 1  # at least one character
    elif isinstance(value, Mapping):  # after the common types: an ABC check is slow
        pairs = value.items()
    else:
        return len(str(value))
    if depth > MAX_DEPTH:
        raise _refuse(argument, "...", f"is nested more than {MAX_DEPTH} levels deep",
                      f"{argument} is a JSON object at most {MAX_DEPTH} levels deep")
    size = 2
    if pairs is None:
        for item in value:
            size += _json_size(argument, item, budget - size, depth + 1) + 2
            if size > budget:
                break
        return size
    for key, item in pairs:
        key = str(key)
        if "\x00" in key or not key.isascii():
            _check_chars(argument, key)
        size += len(key) + 4 + _json_size(argument, item, budget - size, depth + 1)
        if size > budget:
            break
    return size


def _check_metadata(argument: str, value: Any) -> None:
    size = _json_size(argument, value, MAX_METADATA)
    if size > MAX_METADATA:
        raise _refuse(argument, "{...}", f"has more than {MAX_METADATA} characters as JSON text",
                      f"{argument} is a JSON object of at most 1 MiB as JSON text")


def _check_values(prefix: str, values: Mapping[str, Any]) -> None:
    # On the path of every call: the common case (short ASCII text without
    # NUL) costs a dict lookup, a len() and two C-level tests per argument.
    for name, value in values.items():
        if type(value) is str:
            limit = _LIMITS.get(name)
            if (limit is not None and len(value) > limit) or "\x00" in value \
                    or not value.isascii():
                if limit is None:  # role, decision, risk_level, ...
                    _check_chars(f"{prefix}{name}", value)
                else:
                    _check_text(f"{prefix}{name}", name, value)
        elif name == "metadata" and value is not None:
            _check_metadata(f"{prefix}{name}", value)


def check_sizes(name: str, params: Mapping[str, Any]) -> None:
    """Raise InvalidArgument (22023) for what the server would refuse by
    size, a NUL byte or a lone surrogate; nothing is sent then."""
    if name != "log_messages":
        _check_values("", params)
        return
    batch = params.get("messages")
    if not isinstance(batch, Sequence) or isinstance(batch, (str, bytes)):
        return  # the server explains what a batch is
    if len(batch) > MAX_BATCH:
        raise _refuse("messages", f"[{len(batch)} elements]",
                      f"has {len(batch)} elements, at most {MAX_BATCH} are allowed",
                      f"split the batch into calls of at most {MAX_BATCH} messages")
    total = 2
    for index, element in enumerate(batch):
        if not isinstance(element, Mapping):
            continue
        _check_values(f"messages[{index}].", element)
        total += _json_size(f"messages[{index}]", element, MAX_BATCH_SIZE - total) + 2
        if total > MAX_BATCH_SIZE:
            raise _refuse("messages", f"[{len(batch)} elements]",
                          f"has more than {MAX_BATCH_SIZE} characters as JSON text "
                          f"(at element {index})",
                          "a batch is at most 32 MiB as JSON text: split it into smaller calls")


@functools.lru_cache(maxsize=512)
def statement(name: str, params: tuple[str, ...]) -> sql.Composed:
    """``select * from public.<name>(<p> => %(p)s, ...)``"""
    return sql.SQL("select * from {}.{}({})").format(
        sql.Identifier("public"),
        sql.Identifier(name),
        sql.SQL(", ").join(
            sql.SQL("{} => {}").format(sql.Identifier(p), _placeholder(p)) for p in params
        ),
    )


#: Integer parameters, cast in the statement: psycopg sends a Python int that
#: does not fit int4 as int8, which would match no function (42883) instead of
#: failing as out of range (22003).
INTEGER_PARAMS = {"tokens": "int4", "max_rows": "int4", "max_sessions": "int4",
                  "after_position": "int8", "before_position": "int8"}


def _placeholder(param: str) -> sql.Composable:
    cast = INTEGER_PARAMS.get(param)
    if cast is None:
        return sql.Placeholder(param)
    return sql.SQL("{}::{}").format(sql.Placeholder(param), sql.SQL(cast))


def sql_call(name: str, args: Mapping[str, Any]) -> tuple[Call, sql.Composed, dict[str, Any]]:
    """The psycopg statement and parameters for one call."""
    call = CALLS[name]
    params = _given(call, args)
    for key in JSONB_PARAMS.intersection(params):
        params[key] = Jsonb(params[key], dumps=_dumps)
    return call, statement(name, tuple(params)), params


def json_params(call: Call, args: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``rpc(name, params)`` for one call."""
    params: dict[str, Any] = _jsonable(_given(call, args))
    return params


# --- results ---------------------------------------------------------------

def convert(call: Call, rows: Any) -> Any:
    """Rows (a list, or one JSON object from PostgREST) to the result type."""
    if isinstance(rows, Mapping):
        rows = [rows]
    if call.listing:
        return [call.result.from_row(row) for row in rows]
    if len(rows) != 1:
        raise errors.SessionLogError(f"{call.name} returned {len(rows)} rows, expected one")
    return call.result.from_row(rows[0])


# --- retries ---------------------------------------------------------------

# 16 SERIALIZABLE writers on one new session need up to ~10 attempts
# (tests/test_isolation.py); 20 leaves room, and the delay is capped.
MAX_ATTEMPTS = 20
_BASE_DELAY = 0.01  # seconds; doubled each attempt up to _MAX_DELAY, full jitter
_MAX_DELAY = 0.5


def retryable(exc: psycopg.Error) -> bool:
    """40001 serialization failure or 40P01 deadlock."""
    return exc.sqlstate in ("40001", "40P01")


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based)."""
    return random.uniform(0, min(_MAX_DELAY, _BASE_DELAY * 2 ** attempt))


# --- a pool that cannot connect --------------------------------------------
# A pool hides why it has no connection: it retries in the background and a
# caller waits for its whole timeout (30 s by default), then learns only that
# it timed out. So a call waits FAIL_FAST seconds for a connection, then tries
# one connection of its own: if that fails too, its error (connection refused,
# password authentication failed, ...) is raised at once; if it works, the
# pool is only busy or reconnecting after a restart, and the call waits out
# the rest of the pool's timeout.

FAIL_FAST = 2.0  # seconds
PROBE_CONNECT_TIMEOUT = 2  # seconds, unless the DSN sets connect_timeout


def probe_args(conninfo: str, kwargs: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """Arguments for one direct connection like the pool's, that gives up soon."""
    options = dict(kwargs or {})
    given = psycopg.conninfo.conninfo_to_dict(conninfo)
    if "connect_timeout" not in given and "connect_timeout" not in options:
        options["connect_timeout"] = PROBE_CONNECT_TIMEOUT
    return conninfo, options


#: Whether public.<name> exists at all: after 42883, tells "sessionlog is not
#: installed" from "no function matches these argument types".
FUNCTION_EXISTS = "select pg_catalog.to_regproc(%(name)s) is not null as found"


def function_name(name: str) -> dict[str, str]:
    return {"name": f"public.{name}"}


def unreachable(exc: psycopg.Error) -> errors.ConnectionFailed:
    """The server's own reason, e.g. connection refused or a wrong password."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return errors.ConnectionFailed(f"cannot connect to the database: {reason}")


# --- the sync method set ---------------------------------------------------

class SyncAPI:
    """One method per SQL function; subclasses provide ``_call``."""

    def _call(self, name: str, args: dict[str, Any]) -> Any:
        raise NotImplementedError

    def create_session(
        self,
        *,
        user_id: str | None = None,
        session_id: str | uuid.UUID | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SessionCreated:
        """``log.create_session(user_id="u1", title="Support chat")``"""
        return self._call("create_session", locals())

    def log_message(
        self,
        *,
        user_id: str | None = None,
        session_id: str | uuid.UUID,
        role: str,
        content: str,
        model: str | None = None,
        tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        client_message_id: str | None = None,
    ) -> MessageLogged:
        """``log.log_message(user_id="u1", session_id="chat-1", role="user", content="hi")``"""
        return self._call("log_message", locals())

    def log_messages(self, *, messages: Sequence[Mapping[str, Any]]) -> list[MessageLogged]:
        """``log.log_messages(messages=[{"user_id": "u1", "session_id": "chat-1",
        "role": "user", "content": "hi"}])``"""
        return self._call("log_messages", locals())

    def log_interaction(
        self,
        *,
        user_id: str | None = None,
        session_id: str | uuid.UUID,
        prompt: str,
        response: str,
        model: str | None = None,
        tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        client_message_id: str | None = None,
    ) -> InteractionLogged:
        """``log.log_interaction(user_id="u1", session_id="chat-1", prompt="2+2?",
        response="4", model="gpt-4o")``"""
        return self._call("log_interaction", locals())

    def store_behavioral_vector(
        self,
        *,
        user_id: str | None = None,
        session_id: str | uuid.UUID,
        vector: Sequence[float],
        event_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> VectorStored:
        """``log.store_behavioral_vector(user_id="u1", session_id="chat-1",
        vector=[0.1, 0.9], event_type="typing")``"""
        return self._call("store_behavioral_vector", locals())

    def store_auth_decision(
        self,
        *,
        user_id: str | None = None,
        session_id: str | uuid.UUID,
        decision: str,
        confidence: float | None = None,
        risk_score: float | None = None,
        risk_level: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> DecisionStored:
        """``log.store_auth_decision(user_id="u1", session_id="chat-1",
        decision="allow", confidence=0.97, risk_level="low")``"""
        return self._call("store_auth_decision", locals())

    def get_behavioral_vectors(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
        max_rows: int = 100,
    ) -> list[BehavioralVector]:
        """``log.get_behavioral_vectors(session_id="chat-1", user_id="u1")``"""
        return self._call("get_behavioral_vectors", locals())

    def get_auth_decisions(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
        max_rows: int = 100,
    ) -> list[AuthDecision]:
        """``log.get_auth_decisions(session_id="chat-1", user_id="u1")``"""
        return self._call("get_auth_decisions", locals())

    def get_messages(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
        after_position: int = 0,
        max_rows: int = 100,
        before_position: int | None = None,
        latest: bool = False,
    ) -> list[Message]:
        """``log.get_messages(session_id="chat-1", user_id="u1", after_position=100)``;
        the last 20: ``latest=True, max_rows=20``; the page before them:
        ``latest=True, max_rows=20, before_position=page[0].position``"""
        return self._call("get_messages", locals())

    def pop_message(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
    ) -> Message | None:
        """``log.pop_message(session_id="chat-1", user_id="u1")``: the last
        message, removed; None when the session is empty or unknown"""
        popped = self._call("pop_message", locals())
        return popped[0] if popped else None

    def clear_messages(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
    ) -> MessagesCleared:
        """``log.clear_messages(session_id="chat-1", user_id="u1")``: every
        message removed, the session kept"""
        return self._call("clear_messages", locals())

    def update_session(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """``log.update_session(session_id="chat-1", user_id="u1", title="Trip",
        metadata={"pinned": True})`` (metadata merged key by key)"""
        return self._call("update_session", locals())

    def list_sessions(
        self,
        *,
        user_id: str | None = None,
        max_rows: int = 50,
        before: dt.datetime | None = None,
    ) -> list[Session]:
        """``log.list_sessions(user_id="u1", before=page[-1].last_activity_at)``"""
        return self._call("list_sessions", locals())

    def auth_decision_summary(
        self,
        *,
        user_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[DecisionSummary]:
        """``log.auth_decision_summary(user_id="u1")`` (one row per decision
        kind, over the last 24 hours unless since/until say otherwise)"""
        return self._call("auth_decision_summary", locals())

    def delete_session(
        self,
        *,
        session_id: str | uuid.UUID,
        user_id: str | None = None,
    ) -> SessionDeleted:
        """``log.delete_session(session_id="chat-1", user_id="u1")``"""
        return self._call("delete_session", locals())

    def forget_user(self, *, user_id: str | None = None) -> UserForgotten:
        """``log.forget_user(user_id="u1")`` (as ``authenticated``, user_id
        defaults to the JWT subject)"""
        return self._call("forget_user", locals())

    def prune_sessions(
        self,
        *,
        inactive_before: dt.datetime,
        user_id: str | None = None,
        max_sessions: int = 1000,
    ) -> SessionsPruned:
        """``log.prune_sessions(inactive_before=now - timedelta(days=30))``:
        one bounded batch, oldest first; call again while ``more``"""
        return self._call("prune_sessions", locals())
