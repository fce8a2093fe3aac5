"""The real Supabase clients against the PostgREST stand-in, for what they
do beyond a plain POST (issue 12, point 9): rpc with {get: true} / {head:
true} (GET/HEAD, read only), a count (Content-Range), .select() / .eq() /
.limit() / .order() on a listing's rows, and .single(). supabase-py always;
supabase-js (tests/js, npm ci) where Node is present."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import Client, create_client

from sessionlog import SessionLog
from tests.postgrest_stub import PostgrestStub, content_range, sign_jwt

JS = Path(__file__).resolve().parent / "js"
SERVICE_KEY = sign_jwt({"role": "service_role"})


@pytest.fixture
def api(dsn: str) -> Iterator[PostgrestStub]:
    with PostgrestStub(dsn) as stub:
        yield stub


@pytest.fixture
def client(api: PostgrestStub) -> Client:
    return create_client(api.url, SERVICE_KEY)


@pytest.fixture
def five(dsn: str) -> str:
    """alice's chat-1 with five messages, roles user/assistant alternating."""
    with SessionLog(dsn) as log:
        for i in range(1, 6):
            log.log_message(user_id="alice", session_id="chat-1",
                            role="user" if i % 2 else "assistant", content=f"m{i}")
    return "chat-1"


def count_messages(db: psycopg.Connection) -> int:
    return db.execute("select count(*) as n from sessionlog.messages").fetchone()["n"]


def test_content_range_is_postgrests():
    assert content_range(0, 5, None) == "0-4/*"
    assert content_range(0, 2, 5) == "0-1/5"
    assert content_range(2, 2, 5) == "2-3/5"
    assert content_range(0, 0, None) == "*/*"
    assert content_range(0, 0, 0) == "*/0"


# --- supabase-py --------------------------------------------------------------------

def test_get_rpc_reads_with_arguments_from_the_query(client: Client, five: str):
    rows = client.rpc("get_messages", {"session_id": five, "user_id": "alice", "max_rows": 3},
                      get=True).execute().data
    assert [r["content"] for r in rows] == ["m1", "m2", "m3"]


def test_get_rpc_of_a_writer_is_refused_read_only_and_writes_nothing(client: Client, db):
    with pytest.raises(APIError) as raised:
        client.rpc("log_message", {"user_id": "alice", "session_id": "chat-9", "role": "user",
                                   "content": "hi"}, get=True).execute()
    assert raised.value.code == "25006"  # cannot execute … in a read-only transaction
    assert count_messages(db) == 0


def test_count_exact_on_a_listing(client: Client, five: str):
    response = client.rpc("get_messages", {"session_id": five, "user_id": "alice"},
                          count="exact").execute()
    assert response.count == 5 and len(response.data) == 5


def test_head_rpc_gives_the_count_without_rows(client: Client, five: str):
    response = client.rpc("get_messages", {"session_id": five, "user_id": "alice"},
                          count="exact", head=True).execute()
    assert response.count == 5
    assert not response.data


def test_select_filter_order_limit_on_a_listings_rows(client: Client, five: str):
    rows = (client.rpc("get_messages", {"session_id": five, "user_id": "alice"})
            .select("position,content").eq("role", "user").order("position", desc=True)
            .limit(2).execute().data)
    assert rows == [{"position": 5, "content": "m5"}, {"position": 3, "content": "m3"}]


def test_single_on_a_listing_of_several_rows_is_406(client: Client, five: str, api):
    with pytest.raises(APIError) as raised:
        client.rpc("get_messages", {"session_id": five, "user_id": "alice"}).single().execute()
    assert raised.value.code == "PGRST116"
    assert raised.value.details == "The result contains 5 rows"
    one = client.rpc("get_messages", {"session_id": five, "user_id": "alice",
                                      "max_rows": 1}).single().execute().data
    assert one["content"] == "m1"


def test_single_result_function_is_one_object_with_its_content_range(api, five: str):
    import httpx

    response = httpx.post(f"{api.url}/rest/v1/rpc/log_message",
                          json={"user_id": "alice", "session_id": five, "role": "user",
                                "content": "m6"},
                          headers={"Authorization": f"Bearer {SERVICE_KEY}",
                                   "Prefer": "count=exact"})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Range"] == "0-0/1"
    assert response.json()["position"] == 6


# --- supabase-js ----------------------------------------------------------------------

def node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (CI installs it)")
    if not (JS / "node_modules" / "@supabase" / "supabase-js").exists():
        pytest.skip("supabase-js is not installed: run npm ci in tests/js (CI does)")
    return node


def run_js(api: PostgrestStub, calls: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    node = node_or_skip()
    proc = subprocess.run([node, str(JS / "rpc.mjs"), api.url, SERVICE_KEY, json.dumps(calls)],
                          capture_output=True, text=True, timeout=120, cwd=JS)
    assert proc.returncode == 0, proc.stderr
    return {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}


def test_supabase_js_beyond_a_plain_post(api: PostgrestStub, five: str, db):
    args = {"session_id": five, "user_id": "alice"}
    got = run_js(api, [
        {"name": "post", "fn": "log_message",
         "args": {"user_id": "alice", "session_id": five, "role": "user", "content": "m6"}},
        {"name": "get", "fn": "get_messages", "args": {**args, "max_rows": 2},
         "options": {"get": True}},
        {"name": "get-writer", "fn": "log_message",
         "args": {"user_id": "alice", "session_id": five, "role": "user", "content": "no"},
         "options": {"get": True}},
        {"name": "head", "fn": "get_messages", "args": args,
         "options": {"head": True, "count": "exact"}},
        {"name": "count", "fn": "get_messages", "args": args, "options": {"count": "exact"}},
        {"name": "shaped", "fn": "get_messages", "args": args,
         "then": [["select", "position,content"], ["eq", "role", "assistant"],
                  ["order", "position", {"ascending": False}], ["limit", 1]]},
        {"name": "single-many", "fn": "get_messages", "args": args, "then": [["single"]]},
        {"name": "single-one", "fn": "get_messages", "args": {**args, "max_rows": 1},
         "then": [["single"]]},
    ])
    assert got["post"]["status"] == 200 and got["post"]["data"]["position"] == 6
    assert [m["content"] for m in got["get"]["data"]] == ["m1", "m2"]
    assert got["get-writer"]["error"]["code"] == "25006" and got["get-writer"]["status"] == 405
    assert got["head"]["count"] == 6 and got["head"]["data"] is None
    assert got["count"]["count"] == 6 and len(got["count"]["data"]) == 6
    assert got["shaped"]["data"] == [{"position": 4, "content": "m4"}]
    assert got["single-many"]["status"] == 406
    assert got["single-many"]["error"]["code"] == "PGRST116"
    assert got["single-one"]["data"]["content"] == "m1"
    assert count_messages(db) == 6  # the GET of the writer wrote nothing
