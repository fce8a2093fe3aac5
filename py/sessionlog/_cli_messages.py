"""Commands on sessions and messages: session create, sessions, log,
interaction, history, pop, clear, rename, prune, delete-session, forget-user."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from . import _cli_output as out
from ._cli_common import (
    DURATION,
    JSON_OBJECT,
    TIMESTAMP,
    State,
    command,
    group,
    messages,
    pass_state,
)
from .client import SessionLog
from .results import Message, Session


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


def _echo_messages(rows: list[Message]) -> None:
    out.echo_table(
        ["position", "created_at", "role", "model", "tokens", "content"],
        [[m.position, out.short_time(m.created_at), m.role, m.model, m.tokens, m.content]
         for m in rows],
        empty="no messages")


@command()
@click.argument("session_id", metavar="SESSION")
@click.option("--user", help="The session's user (required to address a session by token).")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True,
              help="Start after this position.")
@click.option("--max-rows", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="At most this many messages (ignored with --all).")
@click.option("--all", "all_rows", is_flag=True, help="Every message, paging as needed.")
@click.option("--last", type=click.IntRange(1, 10000),
              help="The last N messages (the tail of the conversation), in position order.")
@click.option("--before", type=click.IntRange(min=0),
              help="Only messages before this position: with --last (or --max-rows), the "
                   "page before it, to page backwards.")
@pass_state
def history(state: State, session_id: str, user: str | None, after: int, max_rows: int,
            all_rows: bool, last: int | None, before: int | None) -> None:
    """Show a session's messages in position order.

    \b
    Examples:
      sessionlog history chat-1 --user alice
      sessionlog history chat-1 --user alice --after 100 --max-rows 50
      sessionlog history chat-1 --user alice --last 20
      sessionlog history chat-1 --user alice --last 20 --before 181   # the 20 before those
      sessionlog --json history chat-1 --user alice --all
    """
    if all_rows and (last is not None or before is not None):
        raise click.UsageError("--all cannot be combined with --last or --before")
    if last is not None or before is not None:
        rows = state.log.get_messages(session_id=session_id, user_id=user, after_position=after,
                                      max_rows=last or max_rows, before_position=before,
                                      latest=True)
    else:
        rows = list(messages(state, session_id, user, after, None if all_rows else max_rows))
    state.emit(rows, lambda: _echo_messages(rows))


@command()
@click.argument("session_id", metavar="SESSION")
@click.option("--user", help="The session's user (required to address a session by token).")
@pass_state
def pop(state: State, session_id: str, user: str | None) -> None:
    """Remove a session's last message (undo) and show it.

    The next message logged takes its position, and its client id (if any)
    may be used again. Nothing happens to an empty or unknown session.

    \b
    Example:
      sessionlog pop chat-1 --user alice
    """
    popped = state.log.pop_message(session_id=session_id, user_id=user)
    state.emit(popped, lambda: click.echo("nothing to pop: the session is empty or unknown")
               if popped is None else out.echo_result(popped))


@command()
@click.argument("session_id", metavar="SESSION")
@click.option("--user", help="The session's user (required to address a session by token).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def clear(state: State, session_id: str, user: str | None, yes: bool) -> None:
    """Delete every message of a session, keeping the session.

    Its title, metadata, behavioral vectors and auth decisions stay; the next
    message is position 1 again.

    \b
    Example:
      sessionlog clear chat-1 --user alice --yes
    """
    if not yes:
        click.confirm(f"Delete every message of session {session_id!r}?", abort=True, err=True)
    state.emit(state.log.clear_messages(session_id=session_id, user_id=user))


@command()
@click.argument("session_id", metavar="SESSION")
@click.argument("title", required=False)
@click.option("--user", help="The session's user (required to address a session by token).")
@click.option("--metadata", type=JSON_OBJECT,
              help='A JSON object merged key by key into the session\'s metadata, '
                   'e.g. \'{"pinned": true}\'.')
@pass_state
def rename(state: State, session_id: str, title: str | None, user: str | None,
           metadata: Any) -> None:
    """Rename a session, or merge metadata into it.

    Sets an existing session's TITLE and/or merges --metadata into its
    metadata, key by key.

    \b
    Examples:
      sessionlog rename chat-1 "Trip to Lisbon" --user alice
      sessionlog rename chat-1 --user alice --metadata '{"pinned": true}'
    """
    if title is None and metadata is None:
        raise click.UsageError("give a TITLE, --metadata, or both")
    state.emit(state.log.update_session(session_id=session_id, user_id=user, title=title,
                                        metadata=metadata))


_PRUNED = ("sessions_deleted", "messages_deleted", "behavioral_vectors_deleted",
           "auth_decisions_deleted")


@command()
@click.option("--inactive-for", type=DURATION, required=True,
              help="Delete sessions with no activity for this long: 30d, 12h, 2w...")
@click.option("--user", help="Only this user's sessions (default: every user's).")
@click.option("--dry-run", is_flag=True,
              help="Count what would be deleted, delete nothing (the deletes run in a "
                   "transaction that is rolled back).")
@click.option("--batch-size", type=click.IntRange(1, 10000), default=1000, show_default=True,
              help="Sessions per call (each call is its own transaction).")
@pass_state
def prune(state: State, inactive_for: dt.timedelta, user: str | None, dry_run: bool,
          batch_size: int) -> None:
    """Delete sessions inactive for a while.

    Each session goes with everything under it. Calls prune_sessions in batches, oldest first, until none is left, and
    prints what was (or, with --dry-run, would be) deleted. Users are kept.

    \b
    Examples:
      sessionlog prune --inactive-for 30d --dry-run
      sessionlog prune --inactive-for 90d --user alice
    """
    cutoff = dt.datetime.now(dt.timezone.utc) - inactive_for
    conn = state.connect()
    client = SessionLog.from_connection(conn)
    totals = dict.fromkeys(_PRUNED, 0)
    calls = 0

    def run() -> None:
        nonlocal calls
        while True:
            batch = client.prune_sessions(inactive_before=cutoff, user_id=user,
                                          max_sessions=batch_size)
            calls += 1
            for key in _PRUNED:
                totals[key] += getattr(batch, key)
            if not batch.more:
                return

    if dry_run:
        with conn.transaction(force_rollback=True):
            run()
    else:
        run()
    summary = {"dry_run": dry_run, "inactive_before": cutoff, "user_id": user, **totals,
               "calls": calls}

    def human() -> None:
        verb = "would delete" if dry_run else "deleted"
        whose = f"of {user} " if user else ""
        click.echo(f"{verb} {totals['sessions_deleted']} sessions {whose}inactive since before "
                   f"{out.short_time(cutoff)} ({totals['messages_deleted']} messages, "
                   f"{totals['behavioral_vectors_deleted']} behavioral vectors, "
                   f"{totals['auth_decisions_deleted']} auth decisions)")

    state.emit(summary, human)


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


COMMANDS = [session, sessions, log, interaction, history, pop, clear, rename, prune,
            delete_session, forget_user]
