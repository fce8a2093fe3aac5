"""The OpenAI Agents SDK ``Session`` protocol over sessionlog.

::

    from agents import Agent, Runner
    from sessionlog import AsyncSessionLog
    from sessionlog.integrations.openai_agents import SessionLogSession

    log = await AsyncSessionLog.connect("postgresql://app@db/app")
    session = SessionLogSession("chat-1", user_id="u1", log=log)
    await Runner.run(agent, "Hello", session=session)

Each input item is one message: ``role`` from the item (``developer`` is
stored as ``system``; tool and function outputs as ``tool``; calls,
reasoning and other model output as ``assistant``), ``content`` its text,
and the item itself in ``metadata["openai_agents"]``, read back as it was
written. Needs the ``openai-agents`` extra.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.memory import SessionSettings

from . import _conversation as conv
from ..results import Message

#: metadata key holding the item.
ITEM_KEY = "openai_agents"

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
#: Items that answer a call and are not ``*_output``: what the user or a tool sent.
_USER_TYPES = {"mcp_approval_response"}


def item_role(item: Mapping[str, Any]) -> str:
    """Our role for an input item (see the module docstring)."""
    role = item.get("role")
    if isinstance(role, str) and role in _ROLES:
        return _ROLES[role]
    kind = item.get("type")
    if isinstance(kind, str):
        if kind.endswith("_output"):
            return "tool"
        if kind in _USER_TYPES:
            return "user"
    return "assistant"


def _parts_text(value: Any) -> str:
    """The text of a content value: a string, or the text of its parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if isinstance(part, Mapping):
                text = part.get("text", part.get("refusal"))
                if isinstance(text, str):
                    texts.append(text)
        return "\n".join(texts)
    return ""


def item_text(item: Mapping[str, Any]) -> str:
    """The readable text of an item: a message's text, a call as
    ``name(arguments)``, an output's text, a reasoning summary."""
    if "content" in item and item.get("type", "message") == "message":
        return _parts_text(item["content"])
    kind = item.get("type")
    if kind in ("function_call", "custom_tool_call", "mcp_call"):
        arguments = item.get("arguments", item.get("input", ""))
        return f"{item.get('name', '')}({arguments if isinstance(arguments, str) else ''})"
    if "output" in item:
        return _parts_text(item["output"])
    if kind == "reasoning":
        return _parts_text(item.get("summary"))
    return ""


def to_record(item: Mapping[str, Any]) -> dict[str, Any]:
    """The sessionlog message for one input item."""
    return {"role": item_role(item), "content": item_text(item),
            "metadata": {ITEM_KEY: item}}


def from_message(message: Message) -> Any:
    """The input item a message stores; a message logged by other means
    (``log_message``, the CLI) reads as an easy input message."""
    item = message.metadata.get(ITEM_KEY)
    if item is not None:
        return item
    return {"role": message.role if message.role != "tool" else "user",
            "content": message.content}


class SessionLogSession:
    """``agents.memory.Session`` stored in sessionlog.

    ``SessionLogSession(session_id, *, user_id, log)``: ``session_id`` is a
    uuid or any token of the user (the first write creates the session);
    ``log`` an ``AsyncSessionLog`` (a sync ``SessionLog`` or
    ``SupabaseSessionLog`` runs in a worker thread) or a DSN string.
    Concurrent writers of one session lose and duplicate nothing.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        *,
        user_id: str | None,
        log: Any,
        session_settings: SessionSettings | None = None,
    ) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.session_settings = session_settings or SessionSettings()
        self._clients = conv.Clients(log, "OpenAI Agents")

    async def get_items(self, limit: int | None = None) -> list[Any]:
        """All items in order, or with ``limit`` (else the settings' limit)
        the newest ``limit`` of them, in order; a negative limit reads all."""
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and limit < 0:
            limit = None  # SQLiteSession's LIMIT -1
        messages = await self._clients.arun(conv.read(self.session_id, self.user_id, limit))
        return [from_message(m) for m in messages]

    async def add_items(self, items: list[Any]) -> None:
        """Append ``items`` in order (one atomic batch)."""
        if not items:
            return
        records = [to_record(item) for item in items]
        await self._clients.arun(conv.append(self.session_id, self.user_id, records))

    async def pop_item(self) -> Any | None:
        """Remove and return the newest item; None when there is none."""
        message = await self._clients.arun(conv.pop(self.session_id, self.user_id))
        return None if message is None else from_message(message)

    async def clear_session(self) -> None:
        """Remove every item (the session row, its title and metadata stay)."""
        await self._clients.arun(conv.clear(self.session_id, self.user_id))

    async def close(self) -> None:
        """Close the pools opened from a DSN; a client you passed stays open."""
        await self._clients.aclose()
