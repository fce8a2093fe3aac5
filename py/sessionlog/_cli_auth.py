"""Commands of behavioral authentication: vector, vectors, decision,
decisions, decision-stats (the trusted engine's side)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from . import _cli_output as out
from ._cli_common import JSON_OBJECT, TIMESTAMP, VECTOR, State, command, pass_state


@command()
@click.argument("user")
@click.argument("session_id", metavar="SESSION")
@click.argument("vector", metavar="V1,V2,...", type=VECTOR)
@click.option("--event-type", help="What was measured, e.g. typing.")
@click.option("--metadata", type=JSON_OBJECT, help="A JSON object.")
@pass_state
def vector(state: State, user: str, session_id: str, vector: list[float],
           event_type: str | None, metadata: Any) -> None:
    """Store a behavioral vector for a session.

    The vector is 1 to 4096 finite numbers. Put -- before a vector that starts with a minus sign.

    \b
    Examples:
      sessionlog vector alice chat-1 0.12,0.5,3 --event-type typing
      sessionlog vector alice chat-1 -- -0.5,0.25
    """
    state.emit(state.log.store_behavioral_vector(
        user_id=user, session_id=session_id, vector=vector, event_type=event_type,
        metadata=metadata))


@command()
@click.argument("user")
@click.argument("session_id", metavar="SESSION")
@click.argument("decision")
@click.option("--confidence", type=float, help="From 0 to 1.")
@click.option("--risk-score", type=float, help="From 0 to 1.")
@click.option("--risk-level", help="low, medium, high or critical.")
@click.option("--metadata", type=JSON_OBJECT, help="A JSON object.")
@pass_state
def decision(state: State, user: str, session_id: str, decision: str,
             confidence: float | None, risk_score: float | None, risk_level: str | None,
             metadata: Any) -> None:
    """Store an authentication decision for a session.

    DECISION is allow, challenge, block (or deny) or learn.

    \b
    Example:
      sessionlog decision alice chat-1 allow --confidence 0.97 --risk-level low
    """
    state.emit(state.log.store_auth_decision(
        user_id=user, session_id=session_id, decision=decision, confidence=confidence,
        risk_score=risk_score, risk_level=risk_level, metadata=metadata))


@command()
@click.argument("session_id", metavar="SESSION")
@click.option("--user", help="The session's user (required to address a session by token).")
@click.option("--max-rows", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="At most this many vectors.")
@pass_state
def vectors(state: State, session_id: str, user: str | None, max_rows: int) -> None:
    """List a session's behavioral vectors, newest first.

    \b
    Example:
      sessionlog vectors chat-1 --user alice
    """
    rows = state.log.get_behavioral_vectors(session_id=session_id, user_id=user,
                                            max_rows=max_rows)
    state.emit(rows, lambda: out.echo_table(
        ["created_at", "vector_id", "event_type", "metadata", "vector"],
        [[out.short_time(v.created_at), str(v.vector_id), v.event_type, v.metadata, v.vector]
         for v in rows],
        empty="no behavioral vectors"))


@command()
@click.argument("session_id", metavar="SESSION")
@click.option("--user", help="The session's user (required to address a session by token).")
@click.option("--max-rows", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="At most this many decisions.")
@pass_state
def decisions(state: State, session_id: str, user: str | None, max_rows: int) -> None:
    """List a session's authentication decisions, newest first.

    \b
    Example:
      sessionlog decisions chat-1 --user alice
    """
    rows = state.log.get_auth_decisions(session_id=session_id, user_id=user, max_rows=max_rows)
    state.emit(rows, lambda: out.echo_table(
        ["created_at", "decision_id", "decision", "confidence", "risk_score", "risk_level",
         "metadata"],
        [[out.short_time(d.created_at), str(d.decision_id), d.decision, d.confidence,
          d.risk_score, d.risk_level, d.metadata] for d in rows],
        empty="no authentication decisions"))


@command("decision-stats")
@click.argument("user")
@click.option("--since", type=TIMESTAMP, help="Start of the window [default: 24 hours before --until].")
@click.option("--until", type=TIMESTAMP, help="End of the window [default: now].")
@pass_state
def decision_summary(state: State, user: str, since: dt.datetime | None,
                     until: dt.datetime | None) -> None:
    """Count USER's decisions by kind over a time window.

    \b
    Example:
      sessionlog decision-stats alice --since 2025-01-01T00:00:00+00:00
    """
    rows = state.log.auth_decision_summary(user_id=user, since=since, until=until)
    state.emit(rows, lambda: out.echo_table(
        ["decision", "decisions", "avg_confidence", "avg_risk_score", "last_decided_at"],
        [[r.decision, r.decisions, r.avg_confidence, r.avg_risk_score,
          out.short_time(r.last_decided_at)] for r in rows],
        empty="no decisions"))


COMMANDS = [vector, vectors, decision, decisions, decision_summary]
