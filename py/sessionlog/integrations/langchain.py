"""LangChain's ``BaseChatMessageHistory`` over sessionlog, sync and async.

::

    from sessionlog import SessionLog
    from sessionlog.integrations.langchain import SessionLogChatMessageHistory

    log = SessionLog("postgresql://app@db/app")
    history = SessionLogChatMessageHistory("chat-1", user_id="u1", log=log)
    history.add_messages([HumanMessage("hi"), AIMessage("hello")])

Each message is one sessionlog message: ``role`` from its type (human →
user, ai → assistant, system → system, tool and function → tool, a
``ChatMessage`` by its role when it is one of ours, else user),
``content`` its text, the model name and total tokens of an ``AIMessage``
in ``model`` and ``tokens``, and the message itself (``message_to_dict``)
in ``metadata["langchain"]``, read back equal to what was written. Needs the
``langchain`` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    message_to_dict,
    messages_from_dict,
)

from . import _conversation as conv
from ..results import Message

#: metadata key holding the serialized message.
MESSAGE_KEY = "langchain"

_ROLES = {
    "human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool",
    "user": "user", "assistant": "assistant", "developer": "system",
}


def message_role(message: BaseMessage) -> str:
    """Our role for a LangChain message (see the module docstring)."""
    kind = message.type
    if kind.endswith("MessageChunk"):  # AIMessageChunk -> ai, ...
        kind = {"AI": "ai", "Human": "human", "System": "system", "Tool": "tool",
                "Function": "function", "Chat": "chat"}.get(kind[:-len("MessageChunk")], kind)
    if kind == "chat":
        return _ROLES.get(str(getattr(message, "role", "")).strip().lower(), "user")
    return _ROLES.get(kind, "user")


def to_record(message: BaseMessage) -> dict[str, Any]:
    """The sessionlog message for one LangChain message."""
    record: dict[str, Any] = {
        "role": message_role(message),
        "content": str(message.text),
        "metadata": {MESSAGE_KEY: message_to_dict(message)},
    }
    if isinstance(message, AIMessage):
        model = conv.model_name((message.response_metadata or {}).get("model_name"))
        tokens = conv.token_count((message.usage_metadata or {}).get("total_tokens"))
        if model is not None:
            record["model"] = model
        if tokens is not None:
            record["tokens"] = tokens
    return record


_FALLBACK = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage}


def from_message(message: Message) -> BaseMessage:
    """The LangChain message a sessionlog message stores; one logged by
    other means (``log_message``, the CLI) reads as Human/AI/System by role
    (a tool message without a call id as a human message)."""
    stored = message.metadata.get(MESSAGE_KEY)
    if stored is not None:
        return messages_from_dict([stored])[0]
    return _FALLBACK.get(message.role, HumanMessage)(content=message.content)


class SessionLogChatMessageHistory(BaseChatMessageHistory):
    """A LangChain chat history stored in sessionlog.

    ``SessionLogChatMessageHistory(session_id, *, user_id, log)``:
    ``session_id`` is a uuid or any token of the user (the first write
    creates the session); ``log`` a ``SessionLog`` or ``SupabaseSessionLog``
    for the sync methods, an ``AsyncSessionLog`` for the async ones (a sync
    client also serves them, in a worker thread), or a DSN string for both.
    ``add_messages`` is one atomic batch; concurrent writers of one session
    lose and duplicate nothing.
    """

    def __init__(self, session_id: str, *, user_id: str | None, log: Any) -> None:
        super().__init__()
        self.session_id = session_id
        self.user_id = user_id
        self._clients = conv.Clients(log, "LangChain")

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message of the session, in order."""
        rows = self._clients.run(conv.read(self.session_id, self.user_id))
        return [from_message(m) for m in rows]

    async def aget_messages(self) -> list[BaseMessage]:
        rows = await self._clients.arun(conv.read(self.session_id, self.user_id))
        return [from_message(m) for m in rows]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        if messages:
            records = [to_record(m) for m in messages]
            self._clients.run(conv.append(self.session_id, self.user_id, records))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        if messages:
            records = [to_record(m) for m in messages]
            await self._clients.arun(conv.append(self.session_id, self.user_id, records))

    def clear(self) -> None:
        """Remove every message (the session row, its title and metadata stay)."""
        self._clients.run(conv.clear(self.session_id, self.user_id))

    async def aclear(self) -> None:
        await self._clients.arun(conv.clear(self.session_id, self.user_id))

    def close(self) -> None:
        """Close the sync pool opened from a DSN; a client you passed stays open."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the pools opened from a DSN; a client you passed stays open."""
        await self._clients.aclose()
