"""Commands on sessions and messages: session create, sessions, log,
interaction, history, delete-session, forget-user."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from . import _cli_output as out
from ._cli_common import JSON_OBJECT, TIMESTAMP, State, command, group, messages, pass_state
from .results import Session


@group()
def session() -> None:
    """Create sessions explicitly (logging creates them too).

    \b
    Example:
      sessionlog session create alice --title "Support chat"
    """


@session.command("create")
@click.argument("user")
@click.option("--session-id", help="A UUID (yours) or a token; default: a new UUID.")
@click.option("--title", help="A title for the session.")
@click.option("--metadata", type=JSON_OBJECT, help='A JSON object, e.g. \'{"channel": "web"}\'.')
@pass_state
def session_create(state: State, user: str, session_id: str | None, title: str | None,
                   metadata: Any) -> None:
    """Create a session for USER (or find it: created is false then).

    \b
    Examples:
      sessionlog session create alice --title "Support chat"
      sessionlog session create alice --session-id 0b0e8b5c-5a4e-4c56-9a3b-0f1e2d3c4b5a
    """
    result = state.log.create_session(user_id=user, session_id=session_id, title=title,
                                      metadata=metadata)
    state.emit(result)


def _session_rows(sessions: list[Session]) -> list[list[Any]]:
    return [[str(s.session_id), s.token, s.title, s.message_count,
             out.short_time(s.last_activity_at), out.short_time(s.created_at)]
            for s in sessions]


@command()
@click.argument("user")
@click.option("--max-rows", type=click.IntRange(1, 10000), default=50, show_default=True,
              help="Page size (sessions last active at the same instant are never split "
                   "across pages, so a page may hold more).")
@click.option("--before", type=TIMESTAMP,
              help="Only sessions last active before this time (the next page).")
@pass_state
def sessions(state: State, user: str, max_rows: int, before: dt.datetime | None) -> None:
    """List USER's sessions, most recently active first.

    \b
    Examples:
      sessionlog sessions alice
      sessionlog sessions alice --max-rows 10 --before 2025-01-31T12:00:00+00:00
    """
    rows = state.log.list_sessions(user_id=user, max_rows=max_rows, before=before)
    state.emit(rows, lambda: out.echo_table(
        ["session_id", "token", "title", "messages", "last_activity_at", "created_at"],
        _session_rows(rows), empty=f"no sessions for {user}"))


@command()
@click.argument("user")
@click.argument("session_id", metavar="SESSION")
@click.argument("role")
@click.argument("content")
@click.option("--model", help="The model that produced the message.")
@click.option("--tokens", type=int, help="Token count (>= 0).")
@click.option("--metadata", type=JSON_OBJECT, help='A JSON object, e.g. \'{"lang": "en"}\'.')
@click.option("--client-id", "client_message_id",
              help="Idempotency key: a retry with the same key returns the original row.")
@pass_state
def log(state: State, user: str, session_id: str, role: str, content: str, model: str | None,
        tokens: int | None, metadata: Any, client_message_id: str | None) -> None:
    """Log one message, creating the user and session if needed.

    SESSION is a UUID or any token (e.g. chat-1) naming one of USER's
    sessions. ROLE is system, user, assistant or tool. Prints the stored row:
    its position, and whether the session and the user were created.

    \b
    Examples:
      sessionlog log alice chat-1 user "hello"
      sessionlog log alice chat-1 assistant "hi!" --model gpt-4o --tokens 3
      sessionlog log alice chat-1 user "hello" --client-id msg-0001   # safe to retry
    """
    result = state.log.log_message(
        user_id=user, session_id=session_id, role=role, content=content, model=model,
        tokens=tokens, metadata=metadata, client_message_id=client_message_id)
    state.emit(result)


@command()
@click.argument("session_id", metavar="SESSION")
@click.option("--user", help="The session's user (required to address a session by token).")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start after this position.")
@click.option("--max-rows", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="At most this many messages (ignored with --all).")
@click.option("--all", "all_rows", is_flag=True, help="Every message, paging as needed.")
@pass_state
def history(state: State, session_id: str, user: str | None, after: int, max_rows: int,
            all_rows: bool) -> None:
    """Show a session's messages in position order.

    \b
    Examples:
      sessionlog history chat-1 --user alice
      sessionlog history chat-1 --user alice --after 100 --max-rows 50
      sessionlog --json history chat-1 --user alice --all
    """
    rows = list(messages(state, session_id, user, after, None if all_rows else max_rows))
    state.emit(rows, lambda: out.echo_table(
        ["position", "created_at", "role", "model", "tokens", "content"],
        [[m.position, out.short_time(m.created_at), m.role, m.model, m.tokens, m.content]
         for m in rows],
        empty="no messages"))


@command("delete-session")
@click.argument("session_id", metavar="SESSION")
@click.option("--user", help="The session's user (required to address a session by token).")
@pass_state
def delete_session(state: State, session_id: str, user: str | None) -> None:
    """Delete a session with its messages, vectors and decisions.

    \b
    Example:
      sessionlog delete-session chat-1 --user alice
    """
    state.emit(state.log.delete_session(session_id=session_id, user_id=user))


@command("forget-user")
@click.argument("user")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def forget_user(state: State, user: str, yes: bool) -> None:
    """Delete USER and everything logged for them.

    Removes every session of USER with its messages, vectors and decisions.

    \b
    Example:
      sessionlog forget-user alice --yes
    """
    if not yes:
        click.confirm(f"Delete user {user!r} and everything logged for them?",
                      abort=True, err=True)
    state.emit(state.log.forget_user(user_id=user))


@command()
@click.argument("user")
@click.argument("session_id", metavar="SESSION")
@click.argument("prompt")
@click.argument("response")
@click.option("--model", help="The model that answered.")
@click.option("--tokens", type=int, help="Token count of the response (>= 0).")
@click.option("--metadata", type=JSON_OBJECT, help="A JSON object, stored on both messages.")
@click.option("--client-id", "client_message_id",
              help="Idempotency key of the pair: a retry returns the original rows.")
@pass_state
def interaction(state: State, user: str, session_id: str, prompt: str, response: str,
                model: str | None, tokens: int | None, metadata: Any,
                client_message_id: str | None) -> None:
    """Log a prompt and its response as two messages.

    They get consecutive positions, roles user and assistant, in one call.

    \b
    Example:
      sessionlog interaction alice chat-1 "2+2?" "4" --model gpt-4o --tokens 1
    """
    state.emit(state.log.log_interaction(
        user_id=user, session_id=session_id, prompt=prompt, response=response, model=model,
        tokens=tokens, metadata=metadata, client_message_id=client_message_id))


COMMANDS = [session, sessions, log, interaction, history, delete_session, forget_user]
