"""Typed results: one frozen dataclass per result shape of the SQL API.

Field names are the SQL result column names. ``from_row`` accepts a psycopg
``dict_row`` (values already typed) or a PostgREST JSON object (uuids and
timestamps as strings); the conversion is driven by the field types.
"""

from __future__ import annotations

import re
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

R = TypeVar("R", bound="Result")


@dataclass(frozen=True, slots=True)
class Result:
    """Base of every result class: builds an instance from one result row."""

    @classmethod
    def from_row(cls: type[R], row: Mapping[str, Any]) -> R:
        """``Message.from_row({"message_id": "…", "position": 1, …})``

        Extra keys are ignored (a newer server may return more columns).
        """
        return cls(**{
            name: None if row[name] is None else convert(row[name])
            for name, convert in _converters(cls)
        })


@dataclass(frozen=True, slots=True)
class SessionCreated(Result):
    session_id: uuid.UUID
    user_id: str
    token: str | None
    created: bool


@dataclass(frozen=True, slots=True)
class MessageLogged(Result):
    message_id: uuid.UUID
    session_id: uuid.UUID
    position: int
    created_at: datetime
    session_created: bool
    user_created: bool
    duplicate: bool


@dataclass(frozen=True, slots=True)
class InteractionLogged(Result):
    prompt_message_id: uuid.UUID
    response_message_id: uuid.UUID
    session_id: uuid.UUID
    prompt_position: int
    response_position: int
    session_created: bool
    user_created: bool
    duplicate: bool


@dataclass(frozen=True, slots=True)
class VectorStored(Result):
    vector_id: uuid.UUID
    session_id: uuid.UUID
    created_at: datetime
    session_created: bool


@dataclass(frozen=True, slots=True)
class DecisionStored(Result):
    decision_id: uuid.UUID
    session_id: uuid.UUID
    decision: str
    created_at: datetime
    session_created: bool


@dataclass(frozen=True, slots=True)
class BehavioralVector(Result):
    vector_id: uuid.UUID
    session_id: uuid.UUID
    event_type: str | None
    vector: list[float]
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuthDecision(Result):
    decision_id: uuid.UUID
    session_id: uuid.UUID
    decision: str
    confidence: float | None
    risk_score: float | None
    risk_level: str | None
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Message(Result):
    message_id: uuid.UUID
    session_id: uuid.UUID
    position: int
    role: str
    content: str
    model: str | None
    tokens: int | None
    metadata: dict[str, Any]
    client_message_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Session(Result):
    session_id: uuid.UUID
    user_id: str
    token: str | None
    title: str | None
    metadata: dict[str, Any]
    created_at: datetime
    last_activity_at: datetime
    message_count: int


@dataclass(frozen=True, slots=True)
class DecisionSummary(Result):
    decision: str
    decisions: int
    avg_confidence: float | None
    avg_risk_score: float | None
    last_decided_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionDeleted(Result):
    deleted: bool
    messages_deleted: int
    behavioral_vectors_deleted: int
    auth_decisions_deleted: int


@dataclass(frozen=True, slots=True)
class UserForgotten(Result):
    user_deleted: bool
    sessions_deleted: int
    messages_deleted: int
    behavioral_vectors_deleted: int
    auth_decisions_deleted: int


@dataclass(frozen=True, slots=True)
class MessagesCleared(Result):
    messages_deleted: int


@dataclass(frozen=True, slots=True)
class SessionsPruned(Result):
    sessions_deleted: int
    messages_deleted: int
    behavioral_vectors_deleted: int
    auth_decisions_deleted: int
    more: bool


# --- conversion, driven by the field types --------------------------------

_FRACTION = re.compile(r"(\.\d{1,6})(?=[+-]|$)")


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp as PostgREST sends it.

    Python 3.10's ``fromisoformat`` wants exactly 3 or 6 fraction digits and
    no ``Z``; PostgreSQL trims trailing zeros (``…:55.1234+00:00``).
    """
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        text = _FRACTION.sub(lambda m: m.group(1).ljust(7, "0"), text)
        return datetime.fromisoformat(text)


def _to_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _to_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else parse_timestamp(value)


def _to_floats(value: Any) -> list[float]:
    return [float(x) for x in value]


def _same(value: Any) -> Any:
    return value


# NULL stays None whatever the field type (see Result.from_row).
_BY_TYPE: dict[Any, Callable[[Any], Any]] = {
    uuid.UUID: _to_uuid,
    datetime: _to_datetime,
    float: float,  # a JSON number may come back as an int (1 for 1.0)
    list[float]: _to_floats,
}


def _converter(hint: Any) -> Callable[[Any], Any]:
    """The converter of a field type; ``X | None`` converts like ``X``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return _BY_TYPE.get(hint, _same)


_Converters = tuple[tuple[str, Callable[[Any], Any]], ...]
_CONVERTERS: dict[type[Result], _Converters] = {}


def _converters(cls: type[Result]) -> _Converters:
    """(field name, converter) for each field of ``cls``, computed once."""
    if cls not in _CONVERTERS:
        hints = typing.get_type_hints(cls)
        _CONVERTERS[cls] = tuple((f.name, _converter(hints[f.name])) for f in fields(cls))
    return _CONVERTERS[cls]
