"""The README's examples, run as written: the psql block, the Python blocks
and the command-line block, against this test's database."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sessionlog.cli import main
from tests.postgrest_stub import PostgrestStub, sign_jwt

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def test_readme_starts_with_the_two_fresh_machine_commands():
    first = blocks("sh")[0].strip().splitlines()
    assert len(first) == 2
    assert "cli.py log" in first[0] and "pip install" in first[0]
    assert "pytest" in first[1]


def test_readme_psql_block_runs(db):
    (script,) = blocks("sql")
    for statement in filter(str.strip, script.split(";")):
        db.execute(statement)
    left = db.execute("select user_id, count(*) as n from sessionlog.messages group by 1").fetchall()
    assert left == [{"user_id": "test-user-123", "n": 1}]  # alice was forgotten
    assert db.execute("select count(*) as n from sessionlog.auth_decisions").fetchone()["n"] == 0


@pytest.mark.parametrize("index", [0, 1], ids=["sync", "async"])
def test_readme_python_block_runs(dsn, index):
    code = blocks("python")[index]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "DATABASE_URL": dsn}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_readme_supabase_block_runs(dsn, monkeypatch, capsys):
    code = blocks("python")[2]
    with PostgrestStub(dsn) as api:
        monkeypatch.setenv("SUPABASE_URL", api.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", sign_jwt({"role": "service_role"}))
        exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "block"


def test_readme_command_line_block_runs(dsn, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    ran = 0
    for line in blocks("sh")[1].splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0] != "sessionlog":
            continue
        target = None
        if ">" in words:
            words, target = words[:words.index(">")], words[words.index(">") + 1]
        result = runner.invoke(main, words[1:], env={"DATABASE_URL": dsn})
        assert result.exit_code == 0, (line, result.output)
        if target:
            Path(target).write_text(result.stdout)
        ran += 1
    assert ran >= 10
    assert "create or replace function public.log_message" in Path("sessionlog.sql").read_text()
