"""auth_decision_summary: a user's decisions by kind over a time window."""

import datetime as dt

import pytest

from sessionlog import AsyncSessionLog, DecisionSummary, InvalidArgument, SessionLog


def _store(log: SessionLog, decision: str, confidence: float, session: str = "login-1") -> None:
    log.store_auth_decision(user_id="u1", session_id=session, decision=decision,
                            confidence=confidence, risk_score=1 - confidence)


def test_summary_counts_each_decision_kind_with_zeros_included(dsn):
    with SessionLog(dsn) as log:
        _store(log, "allow", 0.9)
        _store(log, "allow", 0.7, session="login-2")
        _store(log, "deny", 0.6)  # stored as block
        log.store_auth_decision(user_id="someone-else", session_id="x", decision="allow")
        rows = log.auth_decision_summary(user_id="u1")
    assert [r.decision for r in rows] == ["allow", "challenge", "block", "learn"]
    by_kind = {r.decision: r for r in rows}
    assert isinstance(by_kind["allow"], DecisionSummary)
    assert by_kind["allow"].decisions == 2
    assert by_kind["allow"].avg_confidence == pytest.approx(0.8)
    assert by_kind["allow"].avg_risk_score == pytest.approx(0.2)
    assert isinstance(by_kind["allow"].last_decided_at, dt.datetime)
    assert by_kind["block"].decisions == 1
    assert (by_kind["challenge"].decisions, by_kind["challenge"].avg_confidence,
            by_kind["challenge"].last_decided_at) == (0, None, None)


def test_summary_window_excludes_decisions_outside_it(dsn, db):
    with SessionLog(dsn) as log:
        _store(log, "allow", 0.9)
        db.execute("update sessionlog.auth_decisions set created_at = now() - interval '3 days'")
        _store(log, "allow", 0.5)
        last_day = {r.decision: r.decisions for r in log.auth_decision_summary(user_id="u1")}
        week = {r.decision: r.decisions for r in log.auth_decision_summary(
            user_id="u1", since=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=7))}
    assert last_day["allow"] == 1
    assert week["allow"] == 2


def test_the_default_window_is_the_last_24_hours(dsn, db):
    """since omitted or NULL: 24 hours back from until (now)."""
    with SessionLog(dsn) as log:
        for hours in (23, 25):
            _store(log, "allow", 0.9, session=f"{hours}-hours-ago")
            db.execute("update sessionlog.auth_decisions d"
                       " set created_at = now() - make_interval(hours => %s)"
                       " from sessionlog.sessions s where s.id = d.session_id and s.token = %s",
                       [hours, f"{hours}-hours-ago"])
        omitted = {r.decision: r.decisions for r in log.auth_decision_summary(user_id="u1")}
    null = {r["decision"]: r["decisions"] for r in db.execute(
        "select * from auth_decision_summary(user_id => 'u1', since => null, until => null)")}
    assert omitted["allow"] == null["allow"] == 1


def test_summary_refuses_a_window_that_ends_before_it_starts(dsn):
    now = dt.datetime.now(dt.timezone.utc)
    with SessionLog(dsn) as log, pytest.raises(InvalidArgument) as caught:
        log.auth_decision_summary(user_id="u1", since=now, until=now - dt.timedelta(hours=1))
    assert caught.value.sqlstate == "22023"
    assert "since" in caught.value.message and caught.value.hint


async def test_async_summary_matches_sync(dsn):
    with SessionLog(dsn) as log:
        _store(log, "learn", 0.4)
        expected = log.auth_decision_summary(user_id="u1")
    async with await AsyncSessionLog.connect(dsn) as alog:
        assert await alog.auth_decision_summary(user_id="u1") == expected


def test_supabase_summary_matches_sync(dsn):
    from supabase import create_client

    from sessionlog import SupabaseSessionLog
    from tests.postgrest_stub import PostgrestStub, sign_jwt

    with SessionLog(dsn) as log:
        _store(log, "challenge", 0.3)
        expected = log.auth_decision_summary(user_id="u1")
    with PostgrestStub(dsn) as api:
        client = create_client(api.url, sign_jwt({"role": "service_role"}))
        try:
            assert SupabaseSessionLog(client).auth_decision_summary(user_id="u1") == expected
        finally:
            client.postgrest.aclose()
