"""Data in and out: import (JSON lines, batched) and export."""

from __future__ import annotations

import datetime as dt
import os
import sys
from typing import Any

import click

from . import _cli_output as out
from ._cli_common import PAGE, CLIError, State, command, messages, pass_state
from ._cli_import import Importer
from .errors import SessionLogError
from .results import Message, Session


@command("import")
@click.argument("file", metavar="FILE.jsonl",
                type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--batch-size", type=click.IntRange(1, 10000), default=1000, show_default=True,
              help="Messages per log_messages call.")
@click.option("--stop-on-error", is_flag=True,
              help="Stop at the first rejected line (exit 1); the lines before it are kept.")
@pass_state
def import_(state: State, file: str, batch_size: int, stop_on_error: bool) -> None:
    """Import messages from a JSON-lines file, in batches.

    FILE.jsonl may be - for stdin.

    Each line is a JSON object with log_message's keys: user_id, session_id,
    role, content, and optionally model, tokens, metadata and
    client_message_id (position and created_at, as written by export, are
    ignored; blank lines are skipped). Every batch is one atomic
    log_messages call; a bad line is rejected on its own and the rest of its
    batch is written. Prints the number of inserted, duplicate and rejected
    lines, and the numbers of the rejected lines (exit 0, or 1 with
    --stop-on-error).

    Lines that carry client_message_id can be imported again safely: a rerun
    reports every such line as duplicate and writes nothing. Lines without it
    are logged again.

    \b
    Examples:
      sessionlog import messages.jsonl
      sessionlog import messages.jsonl --batch-size 500 --stop-on-error
      sessionlog export --user alice | sessionlog --dsn "$OTHER_DB" import -
    """
    importer = Importer(state.log, stop_on_error=stop_on_error)
    stdin = file == "-"
    show_bar = not state.json and not stdin and _stderr_is_tty()
    stream = sys.stdin.buffer if stdin else open(file, "rb")  # noqa: SIM115
    try:
        if show_bar:
            with click.progressbar(length=os.path.getsize(file), label="importing",
                                   file=sys.stderr, show_pos=False, show_percent=True,
                                   show_eta=True) as bar:
                summary = importer.run(stream, batch_size, bar.update)
        else:
            summary = importer.run(stream, batch_size)
    except SessionLogError as exc:
        # The import cannot go on (e.g. the connection was lost): say what
        # was written before the error, then the error.
        _echo_import_summary(state, importer.summary)
        raise CLIError(f"import interrupted: {exc}") from None
    finally:
        if not stdin:
            stream.close()
    _echo_import_summary(state, summary)
    if summary.stopped:
        first = summary.rejected[-1]
        raise CLIError(f"stopped at line {first.line}: {first.error}")


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def _echo_import_summary(state: State, summary: Any) -> None:
    if state.json:
        out.echo_json(summary.as_json())
        return
    rejected = [r.line for r in summary.rejected]
    out.echo_pairs([
        ("inserted", summary.inserted),
        ("duplicate", summary.duplicate),
        ("rejected", len(rejected)),
        *([("rejected lines", out.numbers(rejected))] if rejected else []),
    ])
    shown = summary.rejected[:20]
    for r in shown:
        click.echo(f"  line {r.line}: {r.error}")
    if len(summary.rejected) > len(shown):
        click.echo(f"  … and {len(summary.rejected) - len(shown)} more (--json lists them all)")


def _all_sessions(state: State, user: str) -> list[Session]:
    """Every session of ``user``, oldest first, paging through list_sessions
    (a page never splits sessions of equal last_activity_at, so the next one
    starts strictly before the last row's)."""
    found: dict[Any, Session] = {}
    before: dt.datetime | None = None
    while True:
        rows = state.log.list_sessions(user_id=user, max_rows=PAGE, before=before)
        for row in rows:
            found.setdefault(row.session_id, row)
        if len(rows) < PAGE:
            break
        before = rows[-1].last_activity_at
    # Sessions created in one call share created_at; their tokens (or UUIDs,
    # which the client chose) order them the same way in every database.
    return sorted(found.values(), key=lambda s: (s.created_at, s.token or str(s.session_id)))


def _export_line(user: str, address: str, m: Message) -> dict[str, Any]:
    return {
        "user_id": user, "session_id": address, "role": m.role, "content": m.content,
        "model": m.model, "tokens": m.tokens, "metadata": m.metadata,
        "client_message_id": m.client_message_id,
        "position": m.position, "created_at": m.created_at.isoformat(),
    }


@command()
@click.option("--user", required=True, help="Whose messages (every session, unless --session).")
@click.option("--session", "session_id", help="Only this session (a UUID or a token).")
@pass_state
def export(state: State, user: str, session_id: str | None) -> None:
    """Write messages as JSON lines to stdout, ready for import.

    One message per line with log_message's keys plus position and
    created_at, sessions oldest first, each in position order. session_id is
    the session's token when it has one, else its UUID (with --session: the
    value given). With --json, one JSON array instead. A user or session with
    no messages is said on stderr (exit 0, nothing on stdout but an empty
    array with --json).

    Export then import into the SAME database logs every message without a
    client_message_id again (a copy); the messages with one are reported as
    duplicates. Into another database, the round trip is exact.

    \b
    Examples:
      sessionlog export --user alice > alice.jsonl
      sessionlog export --user alice --session chat-1
      sessionlog export --user alice | sessionlog --dsn "$OTHER_DB" import -
    """
    if session_id is not None:
        targets = [(session_id, session_id)]
    else:
        targets = [(str(s.session_id), s.token or str(s.session_id))
                   for s in _all_sessions(state, user)]
    first = True
    if state.json:
        click.echo("[", nl=False)
    for target, address in targets:
        for m in messages(state, target, user, 0, None):
            line = out.dumps(_export_line(user, address, m), indent=None)
            if state.json:
                click.echo(("\n" if first else ",\n") + line, nl=False)
            else:
                click.echo(line)
            first = False
    if state.json:
        click.echo("\n]" if not first else "]")
    if first:
        what = f"session {session_id!r} of {user!r}" if session_id else f"user {user!r}"
        click.echo(f"nothing to export: {what} has no messages", err=True)


COMMANDS = [import_, export]
