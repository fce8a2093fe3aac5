"""What the framework adapters share: one sessionlog session seen as a list
of messages, over whichever client the caller has.

Each operation (read the tail, append, pop, clear, …) is written once, as a
generator that yields ``(method, arguments)`` for each sessionlog call it
needs and receives the result; ``run_sync`` and ``run_async`` drive it over a
sync client (``SessionLog``, ``SupabaseSessionLog``) or an async one
(``AsyncSessionLog``). So the sync and async sides of an adapter cannot drift
apart, and neither goes through a thread when the client fits it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from ..errors import InvalidArgument
from ..results import Message

#: A request to the client: method name and keyword arguments.
Request = tuple[str, dict[str, Any]]
Op = Generator[Request, Any, Any]

#: get_messages and list_sessions accept max_rows up to 10,000.
MAX_PAGE = 10_000
#: A log_messages batch: at most 10,000 elements and 32 MiB of JSON. One
#: add stays one atomic batch up to these sizes (with room for the keys).
MAX_BATCH_ITEMS = 10_000
MAX_BATCH_BYTES = 30 * 1024 * 1024


# --- the operations ---------------------------------------------------------

def read(session_id: str, user_id: str | None, limit: int | None = None) -> Op:
    """The session's messages in order; with ``limit``, only the newest
    ``limit`` of them (still in order). ``limit <= 0`` reads nothing."""
    address = {"session_id": session_id, "user_id": user_id}
    if limit is None:
        messages: list[Message] = []
        after = 0
        while True:
            page = yield "get_messages", {**address, "after_position": after,
                                          "max_rows": MAX_PAGE}
            messages.extend(page)
            if len(page) < MAX_PAGE:
                return messages
            after = page[-1].position
    if limit <= 0:
        return []
    # The tail, paged backwards when it is longer than one page.
    chunks: list[list[Message]] = []
    before: int | None = None
    remaining = limit
    while remaining > 0:
        size = min(remaining, MAX_PAGE)
        page = yield "get_messages", {**address, "max_rows": size, "latest": True,
                                      "before_position": before}
        chunks.append(page)
        if len(page) < size:
            break
        remaining -= len(page)
        before = page[0].position
    return [m for chunk in reversed(chunks) for m in chunk]


def length(session_id: str, user_id: str | None) -> Op:
    """How many messages the session has: its last position (positions
    are 1, 2, 3, … with no gap), read with one call."""
    tail = yield from read(session_id, user_id, 1)
    return tail[-1].position if tail else 0


def append(session_id: str, user_id: str | None, records: Sequence[Mapping[str, Any]]) -> Op:
    """Log ``records`` (role, content, metadata, model, tokens) in order, as
    one all-or-nothing ``log_messages`` batch, or one per ``MAX_BATCH_*``
    of them when there are more."""
    rows = [{**r, "user_id": user_id, "session_id": session_id} for r in records]
    if len(rows) == 1:
        # One message: log_message, the single-row fast path (no batch to unpack).
        return [(yield "log_message", rows[0])]
    logged = []
    for start in range(0, len(rows), MAX_BATCH_ITEMS):
        batch = rows[start:start + MAX_BATCH_ITEMS]
        try:
            logged.extend((yield "log_messages", {"messages": batch}))
        except InvalidArgument:
            # Sizes are measured only now: serializing every row beforehand
            # would cost each add ~10% for a limit few batches reach. Nothing
            # was written, so a batch over the byte limit is sent again split.
            parts = _by_size(batch)
            if len(parts) == 1:
                raise
            for part in parts:
                logged.extend((yield "log_messages", {"messages": part}))
    return logged


def _by_size(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``rows`` split into runs of at most ``MAX_BATCH_BYTES`` of JSON."""
    parts: list[list[dict[str, Any]]] = [[]]
    size = 0
    for row in rows:
        row_size = len(json.dumps(row, default=str).encode()) + 1
        if parts[-1] and size + row_size > MAX_BATCH_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(row)
        size += row_size
    return parts


def pop(session_id: str, user_id: str | None) -> Op:
    """Remove and return the last message, or None when there is none."""
    popped = yield "pop_message", {"session_id": session_id, "user_id": user_id}
    if isinstance(popped, list):  # the listing itself (0 or 1 row)
        return popped[0] if popped else None
    return popped  # the shim's Message | None


def clear(session_id: str, user_id: str | None) -> Op:
    """Remove every message, keep the session; the number removed."""
    result = yield "clear_messages", {"session_id": session_id, "user_id": user_id}
    return result.messages_deleted


def delete(session_id: str, user_id: str | None) -> Op:
    """Delete the session itself; whether it existed."""
    result = yield "delete_session", {"session_id": session_id, "user_id": user_id}
    return result.deleted


def create(session_id: str, user_id: str | None) -> Op:
    """Make sure the session exists (an empty conversation)."""
    yield "create_session", {"session_id": session_id, "user_id": user_id}


def session_keys(user_id: str | None) -> Op:
    """Every session of the user, by the key it was addressed with: its
    token, or its uuid when it was created by uuid."""
    keys: list[str] = []
    seen: set[Any] = set()
    before = None
    while True:
        page = yield "list_sessions", {"user_id": user_id, "max_rows": MAX_PAGE,
                                       "before": before}
        for s in page:
            if s.session_id not in seen:
                seen.add(s.session_id)
                keys.append(s.token if s.token is not None else str(s.session_id))
        # A page never splits a timestamp tie, so a short page is the last.
        if len(page) < MAX_PAGE:
            return keys
        before = page[-1].last_activity_at


# --- the drivers -------------------------------------------------------------

def _unstorable(exc: InvalidArgument) -> InvalidArgument:
    """22P05 says only "unsupported Unicode escape sequence": name the cause."""
    if exc.sqlstate != "22P05":
        return exc
    return InvalidArgument(
        "a message holds text PostgreSQL cannot store (a NUL character \\u0000 or an "
        "unpaired surrogate); nothing was written", sqlstate=exc.sqlstate,
        detail=exc.message, hint="remove NUL characters before storing the message")


def _throw(op: Op, exc: InvalidArgument) -> Request:
    """Raise ``exc`` inside the operation (which may handle it and go on);
    unhandled, it leaves with its cause named."""
    try:
        return op.throw(exc)
    except InvalidArgument as unhandled:
        if unhandled is exc:
            raise _unstorable(exc) from exc
        raise


def run_sync(log: Any, op: Op) -> Any:
    """Run ``op`` over a sync client."""
    try:
        name, kwargs = next(op)
        while True:
            try:
                result = getattr(log, name)(**kwargs)
            except InvalidArgument as exc:
                name, kwargs = _throw(op, exc)
            else:
                name, kwargs = op.send(result)
    except StopIteration as done:
        return done.value


async def run_async(log: Any, op: Op) -> Any:
    """Run ``op`` over an async client, or a sync one in a worker thread."""
    is_async = asyncio.iscoroutinefunction(getattr(log, "get_messages", None))
    try:
        name, kwargs = next(op)
        while True:
            method = getattr(log, name)
            try:
                if is_async:
                    result = await method(**kwargs)
                else:
                    result = await asyncio.to_thread(method, **kwargs)
            except InvalidArgument as exc:
                name, kwargs = _throw(op, exc)
            else:
                name, kwargs = op.send(result)
    except StopIteration as done:
        return done.value


class Clients:
    """The client(s) an adapter runs on, from its ``log`` argument.

    ``log`` is a ``SessionLog`` or ``SupabaseSessionLog`` (sync), an
    ``AsyncSessionLog`` (async) or a DSN string, from which a ``SessionLog``
    and an ``AsyncSessionLog`` are opened on first use (each its own pool;
    ``close``/``aclose`` close them). The async pool belongs to the event
    loop that first used it.
    """

    def __init__(self, log: Any, framework: str) -> None:
        self._framework = framework
        self._dsn: str | None = None
        self._sync: Any = None
        self._async: Any = None
        self._lock = threading.Lock()
        self._alock: asyncio.Lock | None = None
        if isinstance(log, str):
            self._dsn = log
        elif asyncio.iscoroutinefunction(getattr(log, "log_messages", None)):
            self._async = log
        elif callable(getattr(log, "log_messages", None)):
            self._sync = log
        else:
            raise TypeError(
                f"log must be a SessionLog, AsyncSessionLog, SupabaseSessionLog or a DSN "
                f"string, not {type(log).__name__}")

    def sync(self) -> Any:
        """The sync client; TypeError when only an async one was given."""
        if self._sync is None:
            if self._dsn is None:
                raise TypeError(
                    f"this {self._framework} adapter was built over an AsyncSessionLog: use "
                    f"its async methods, or build it over a SessionLog or a DSN")
            with self._lock:
                if self._sync is None:
                    from ..client import SessionLog

                    self._sync = SessionLog(self._dsn)
        return self._sync

    async def async_(self) -> Any:
        """The async client if there is one (or a DSN), else the sync one."""
        if self._async is None and self._dsn is not None:
            if self._alock is None:
                self._alock = asyncio.Lock()
            async with self._alock:
                if self._async is None:
                    from ..aio import AsyncSessionLog

                    self._async = await AsyncSessionLog.connect(self._dsn)
        return self._async if self._async is not None else self._sync

    def run(self, op: Op) -> Any:
        return run_sync(self.sync(), op)

    async def arun(self, op: Op) -> Any:
        return await run_async(await self.async_(), op)

    def close(self) -> None:
        """Close the sync pool opened from a DSN (not a client you passed)."""
        if self._dsn is not None and self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close both pools opened from a DSN (not a client you passed)."""
        self.close()
        if self._dsn is not None and self._async is not None:
            await self._async.close()
            self._async = None


# --- small helpers for the records ------------------------------------------

def model_name(value: Any) -> str | None:
    """``value`` when it can go in the ``model`` column, else None (the
    serialized message keeps it anyway)."""
    if isinstance(value, str) and 0 < len(value) <= 255 and value.isprintable():
        return value
    return None


def token_count(value: Any) -> int | None:
    """``value`` when it can go in the ``tokens`` column, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    return None
