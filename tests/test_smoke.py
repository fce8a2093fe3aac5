def test_log_message_creates_parents(db):
    row = db.execute(
        "select * from log_message(user_id => 'u', session_id => 's', role => 'user', content => 'hi')"
    ).fetchone()
    assert row["position"] == 1 and row["session_created"] and row["user_created"]
