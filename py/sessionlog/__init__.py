"""sessionlog: log chat, AI and behavioral-auth sessions in PostgreSQL.

Every write is one call of a PL/pgSQL function that ensures the user and the
session and inserts the row atomically; this package only calls them.

    >>> from sessionlog import SessionLog
    >>> with SessionLog("postgresql://app@localhost/app") as log:   # doctest: +SKIP
    ...     log.log_message(user_id="u1", session_id="chat-1", role="user", content="hi")
"""

from sessionlog.aio import AsyncSessionLog
from sessionlog.client import SessionLog
from sessionlog.errors import (
    ConnectionFailed,
    IdempotencyConflict,
    InvalidArgument,
    NotOwner,
    SerializationFailure,
    SessionLogError,
)
from sessionlog.migrations import migrate, rollback
from sessionlog.results import (
    AuthDecision,
    BehavioralVector,
    DecisionStored,
    InteractionLogged,
    Message,
    MessageLogged,
    Session,
    SessionCreated,
    SessionDeleted,
    UserForgotten,
    VectorStored,
)
from sessionlog.supabase import SupabaseSessionLog

__all__ = [
    "AsyncSessionLog", "SessionLog", "SupabaseSessionLog",
    "SessionLogError", "InvalidArgument", "NotOwner", "IdempotencyConflict",
    "SerializationFailure", "ConnectionFailed",
    "SessionCreated", "MessageLogged", "InteractionLogged", "VectorStored", "DecisionStored",
    "BehavioralVector", "AuthDecision", "Message", "Session", "SessionDeleted", "UserForgotten",
    "migrate", "rollback",
]
