"""docs/integrations.md's examples, run as written against this test's
database: one per framework, each leaving its conversation in sessionlog."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"


def examples() -> dict[str, str]:
    """The python block under each ### heading of the Examples section."""
    section = DOC.read_text().split("## Examples", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"### (.+?)\n.*?```python\n(.*?)```", section, re.S)
    return dict(found)


def test_there_is_one_example_per_framework() -> None:
    assert list(examples()) == ["OpenAI Agents SDK", "LangChain", "LlamaIndex"]


@pytest.mark.parametrize(("framework", "session", "rows", "printed"), [
    ("OpenAI Agents SDK", "support-42",
     [("user", "Hello"), ("assistant", "Hi! How can I help?")], "Hi! How can I help?"),
    ("LangChain", "geo-chat",
     [("user", "Capital of France?"), ("assistant", "Paris."), ("user", "Its population?"),
      ("assistant", "About 2.1 million.")], "ai About 2.1 million."),
    ("LlamaIndex", "notes-7",
     [("user", "Remember: the meeting is at 3pm.")], "['notes-7']"),
])
def test_the_example_runs_as_written(dsn: str, db: psycopg.Connection, framework: str,
                                     session: str, rows: list[tuple[str, str]],
                                     printed: str) -> None:
    pytest.importorskip({"OpenAI Agents SDK": "agents", "LangChain": "langchain_core",
                         "LlamaIndex": "llama_index.core"}[framework])
    result = subprocess.run([sys.executable, "-c", examples()[framework]], capture_output=True,
                            text=True, env={**os.environ, "DATABASE_URL": dsn}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert printed in result.stdout
    stored = db.execute(
        "select m.role, m.content from sessionlog.messages m "
        "join sessionlog.sessions s on s.id = m.session_id "
        "where s.user_id = 'user_2abc' and s.token = %s order by m.position", [session]
    ).fetchall()
    assert [(r["role"], r["content"]) for r in stored][:len(rows)] == rows
