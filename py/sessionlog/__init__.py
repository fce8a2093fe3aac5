"""sessionlog: log chat, AI and behavioral-auth sessions in PostgreSQL.

Every write is one call of a PL/pgSQL function that ensures the user and the
session and inserts the row atomically; this package only calls them.

    >>> from sessionlog import SessionLog
    >>> with SessionLog("postgresql://app@localhost/app") as log:   # doctest: +SKIP
    ...     log.log_message(user_id="u1", session_id="chat-1", role="user", content="hi")
"""

from typing import TYPE_CHECKING

from sessionlog.client import SessionLog
from sessionlog.errors import (
    ConnectionFailed,
    IdempotencyConflict,
    InvalidArgument,
    NotInstalled,
    NotOwner,
    SerializationFailure,
    SessionLogError,
)
from sessionlog.migrations import migrate, rollback
from sessionlog.results import (
    AuthDecision,
    BehavioralVector,
    DecisionStored,
    DecisionSummary,
    InteractionLogged,
    Message,
    MessageLogged,
    MessagesCleared,
    Session,
    SessionCreated,
    SessionDeleted,
    SessionsPruned,
    UserForgotten,
    VectorStored,
)

if TYPE_CHECKING:
    from sessionlog.aio import AsyncSessionLog
    from sessionlog.supabase import SupabaseSessionLog


def __getattr__(name: str) -> object:
    # Imported on first use: the async and Supabase stacks (httpx, pydantic)
    # would otherwise slow down every start of the command line.
    if name == "AsyncSessionLog":
        from sessionlog.aio import AsyncSessionLog

        return AsyncSessionLog
    if name == "SupabaseSessionLog":
        from sessionlog.supabase import SupabaseSessionLog

        return SupabaseSessionLog
    raise AttributeError(f"module 'sessionlog' has no attribute {name!r}")

__all__ = [
    "AsyncSessionLog", "SessionLog", "SupabaseSessionLog",
    "SessionLogError", "InvalidArgument", "NotOwner", "IdempotencyConflict",
    "SerializationFailure", "ConnectionFailed", "NotInstalled",
    "SessionCreated", "MessageLogged", "InteractionLogged", "VectorStored", "DecisionStored", "DecisionSummary",
    "BehavioralVector", "AuthDecision", "Message", "Session", "SessionDeleted", "UserForgotten",
    "MessagesCleared", "SessionsPruned",
    "migrate", "rollback",
]
