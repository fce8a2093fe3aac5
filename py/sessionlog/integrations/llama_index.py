"""LlamaIndex's ``BaseChatStore`` over sessionlog, sync and async; the
store's key is the session id.

::

    from llama_index.core.memory import ChatMemoryBuffer
    from sessionlog import SessionLog
    from sessionlog.integrations.llama_index import SessionLogChatStore

    store = SessionLogChatStore(user_id="u1", log=SessionLog("postgresql://app@db/app"))
    memory = ChatMemoryBuffer.from_defaults(chat_store=store, chat_store_key="chat-1")

Each ``ChatMessage`` is one sessionlog message: ``role`` from its role
(developer → system; chatbot and model → assistant; function and tool →
tool), ``content`` the text of its text blocks, and the message itself
(``model_dump_json``) in ``metadata["llama_index"]``, read back equal to
what was written. Needs the ``llama-index`` extra.

Positions are gap-free, so ``delete_message`` removes the last message only
(any other index raises ``ValueError``), and ``set_messages`` is a clear
followed by one atomic append, not one transaction.
"""

from __future__ import annotations

import json
from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms import ChatMessage, MessageRole
from llama_index.core.storage.chat_store.base import BaseChatStore

from . import _conversation as conv
from ..results import Message

#: metadata key holding the serialized message.
MESSAGE_KEY = "llama_index"

_ROLES = {
    "system": "system", "developer": "system", "user": "user", "assistant": "assistant",
    "chatbot": "assistant", "model": "assistant", "function": "tool", "tool": "tool",
}


def to_record(message: ChatMessage) -> dict[str, Any]:
    """The sessionlog message for one ``ChatMessage``."""
    role = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
    return {
        "role": _ROLES.get(role, "user"),
        "content": message.content or "",
        # Through JSON text, as the framework persists it (bytes as base64).
        "metadata": {MESSAGE_KEY: json.loads(message.model_dump_json())},
    }


def from_message(message: Message) -> ChatMessage:
    """The ``ChatMessage`` a sessionlog message stores; one logged by other
    means (``log_message``, the CLI) reads as a text message of its role."""
    stored = message.metadata.get(MESSAGE_KEY)
    if stored is not None:
        return ChatMessage.model_validate_json(json.dumps(stored))
    return ChatMessage(role=MessageRole(message.role), content=message.content)


def _index(idx: int, length: int) -> int | None:
    """``idx`` as a list index (negative from the end); None past the end."""
    if idx < 0:
        idx += length
        if idx < 0:
            raise IndexError("message index out of range")
    return idx if idx < length else None


def _not_last(key: str, idx: int, length: int) -> ValueError:
    return ValueError(
        f"cannot delete message {idx} of {length} in chat {key!r}: sessionlog numbers a "
        f"session's messages 1, 2, 3, … with no gap, so only the last one can be removed "
        f"(delete_last_message, or delete_message(key, {length - 1}))")


class SessionLogChatStore(BaseChatStore):
    """A LlamaIndex chat store kept in sessionlog, one session per key.

    ``SessionLogChatStore(*, user_id, log)``: ``log`` a ``SessionLog`` or
    ``SupabaseSessionLog`` for the sync methods, an ``AsyncSessionLog`` for
    the async ones (a sync client also serves them, in a worker thread), or
    a DSN string for both. A key is a session uuid or any token of the user.
    """

    user_id: str | None = None
    _clients: conv.Clients = PrivateAttr()

    def __init__(self, *, user_id: str | None, log: Any) -> None:
        super().__init__(user_id=user_id)
        self._clients = conv.Clients(log, "LlamaIndex")

    @classmethod
    def class_name(cls) -> str:
        return "SessionLogChatStore"

    # --- sync --------------------------------------------------------------

    def set_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """Replace the chat's messages (a clear, then one atomic append)."""
        records = [to_record(m) for m in messages]  # a bad message fails before the clear
        self._clients.run(conv.clear(key, self.user_id))
        if records:
            self._clients.run(conv.append(key, self.user_id, records))
        else:
            self._clients.run(conv.create(key, self.user_id))

    def get_messages(self, key: str) -> list[ChatMessage]:
        return [from_message(m) for m in self._clients.run(conv.read(key, self.user_id))]

    def add_message(self, key: str, message: ChatMessage, idx: int | None = None) -> None:
        """Append ``message``; ``idx`` may only name the end of the chat."""
        if idx is not None:
            length = self._clients.run(conv.length(key, self.user_id))
            if _index(idx, length + 1) != length:
                raise _insert_error(key, idx, length)
        self._clients.run(conv.append(key, self.user_id, [to_record(message)]))

    def delete_messages(self, key: str) -> list[ChatMessage] | None:
        """Delete the chat (its session); its messages, None if it did not exist."""
        messages = self.get_messages(key)
        return messages if self._clients.run(conv.delete(key, self.user_id)) else None

    def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Delete message ``idx`` when it is the last one; None past the end."""
        length = self._clients.run(conv.length(key, self.user_id))
        target = _index(idx, length)
        if target is None:
            return None
        if target != length - 1:
            raise _not_last(key, idx, length)
        return self.delete_last_message(key)

    def delete_last_message(self, key: str) -> ChatMessage | None:
        message = self._clients.run(conv.pop(key, self.user_id))
        return None if message is None else from_message(message)

    def get_keys(self) -> list[str]:
        """The keys of every chat of the user, most recently active first."""
        return self._clients.run(conv.session_keys(self.user_id))

    # --- async -------------------------------------------------------------

    async def aset_messages(self, key: str, messages: list[ChatMessage]) -> None:
        records = [to_record(m) for m in messages]
        await self._clients.arun(conv.clear(key, self.user_id))
        if records:
            await self._clients.arun(conv.append(key, self.user_id, records))
        else:
            await self._clients.arun(conv.create(key, self.user_id))

    async def aget_messages(self, key: str) -> list[ChatMessage]:
        rows = await self._clients.arun(conv.read(key, self.user_id))
        return [from_message(m) for m in rows]

    async def async_add_message(self, key: str, message: ChatMessage,
                                idx: int | None = None) -> None:
        if idx is not None:
            length = await self._clients.arun(conv.length(key, self.user_id))
            if _index(idx, length + 1) != length:
                raise _insert_error(key, idx, length)
        await self._clients.arun(conv.append(key, self.user_id, [to_record(message)]))

    async def adelete_messages(self, key: str) -> list[ChatMessage] | None:
        messages = await self.aget_messages(key)
        return messages if await self._clients.arun(conv.delete(key, self.user_id)) else None

    async def adelete_message(self, key: str, idx: int) -> ChatMessage | None:
        length = await self._clients.arun(conv.length(key, self.user_id))
        target = _index(idx, length)
        if target is None:
            return None
        if target != length - 1:
            raise _not_last(key, idx, length)
        return await self.adelete_last_message(key)

    async def adelete_last_message(self, key: str) -> ChatMessage | None:
        message = await self._clients.arun(conv.pop(key, self.user_id))
        return None if message is None else from_message(message)

    async def aget_keys(self) -> list[str]:
        return await self._clients.arun(conv.session_keys(self.user_id))

    # --- pools ---------------------------------------------------------------

    def close(self) -> None:
        """Close the sync pool opened from a DSN; a client you passed stays open."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the pools opened from a DSN; a client you passed stays open."""
        await self._clients.aclose()


def _insert_error(key: str, idx: int, length: int) -> ValueError:
    return ValueError(
        f"cannot insert at index {idx} of chat {key!r} ({length} messages): sessionlog "
        f"numbers a session's messages with no gap and appends only; omit idx")
