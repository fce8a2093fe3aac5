"""The README's examples, run as written: the psql block, the Python blocks
and the command-line block, against this test's database."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from sessionlog import embedded
from sessionlog.cli import main
from tests.postgrest_stub import PostgrestStub, sign_jwt

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def assert_python_block_output(index: int, stdout: str, again: bool = False) -> None:
    """What README Python block ``index`` prints on a database where alice
    has nothing yet (``again``: its second run), as the README describes it."""
    lines = stdout.splitlines()
    if index == 0:
        # position, session_created, duplicate: the first message of a new
        # session; run again, the same client_message_id returns the original
        # row (a duplicate, nothing new), so the history still holds one message.
        assert lines[:2] == ["1 False True" if again else "1 True False", "1 user Hello"], stdout
        # sqlstate, message, hint: 22023, the argument named, the accepted values.
        assert len(lines) == 3, stdout
        assert lines[2].startswith("22023 invalid role 'bot'"), stdout
        assert lines[2].endswith("system, user, assistant, tool"), stdout
    elif index == 1:
        # prompt_position, response_position in a brand-new session.
        assert lines == ["1 2"], stdout
    else:
        raise AssertionError(f"no expected output for Python block {index}")


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
    for again in (False, True):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env={**os.environ, "DATABASE_URL": dsn}, timeout=120)
        assert result.returncode == 0, result.stderr
        assert_python_block_output(index, result.stdout, again=again)


def test_readme_supabase_block_runs(dsn, monkeypatch, capsys):
    code = blocks("python")[2]
    with PostgrestStub(dsn) as api:
        monkeypatch.setenv("SUPABASE_URL", api.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", sign_jwt({"role": "service_role"}))
        exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "block"


def test_readme_command_line_block_runs(fresh_dsn, tmp_path, monkeypatch):
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
        result = runner.invoke(main, words[1:], env={"DATABASE_URL": fresh_dsn})
        assert result.exit_code == 0, (line, result.output)
        if target:
            Path(target).write_text(result.stdout)
        ran += 1
    assert ran >= 10
    assert "create or replace function public.log_message" in Path("sessionlog.sql").read_text()


def test_every_readme_block_runs_as_pasted_in_a_fresh_clone(tmp_path):
    """After the two fresh-machine commands (a clone whose .venv has
    sessionlog installed, a fresh HOME, no DATABASE_URL): the first command's
    log, then every block in README order, each as a user pastes it: the sh
    blocks into bash, the SQL into psql "$(.venv/bin/sessionlog server url)",
    the Python blocks into .venv/bin/python (Supabase's against the test
    suite's PostgREST stand-in)."""
    from tests.test_cli import psql_bin
    from tests.test_first_hour import clean_env, copy_of_repository

    root = Path(tempfile.mkdtemp(prefix="sessionlog-readme-", dir="/tmp"))
    clone = copy_of_repository(root / "clone", Path(sys.prefix))
    home = root / "home"
    home.mkdir()
    env = clean_env(HOME=str(home))

    def sh(script: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=clone,
                              env={**env, **extra}, capture_output=True, text=True,
                              timeout=300)

    try:
        fresh = blocks("sh")[0].strip().splitlines()[0].rsplit("&&", 1)[1]
        first = sh(fresh)
        assert first.returncode == 0, first.stderr
        row = dict(line.split(None, 1) for line in first.stdout.splitlines() if line.strip())
        assert (row["position"], row["session_created"]) == ("1", "true"), first.stdout
        again = sh(fresh)  # "run the last part again"
        assert again.returncode == 0, again.stderr
        row = dict(line.split(None, 1) for line in again.stdout.splitlines() if line.strip())
        assert (row["position"], row["session_created"]) == ("2", "false"), again.stdout

        (clone / "block.sql").write_text(blocks("sql")[0])
        psql = sh(f'"{psql_bin()}" "$(.venv/bin/sessionlog server url)" -X -q '
                  "-v ON_ERROR_STOP=1 -f block.sql")
        assert psql.returncode == 0, psql.stderr

        for index, code in enumerate(blocks("python")[:2]):
            (clone / f"example{index}.py").write_text(code)
            ran = sh(f".venv/bin/python example{index}.py")
            assert ran.returncode == 0, ran.stderr
            assert_python_block_output(index, ran.stdout)  # the SQL block forgot alice

        dsn = sh(".venv/bin/sessionlog server url").stdout.strip()
        with PostgrestStub(dsn) as api:
            (clone / "supabase_example.py").write_text(blocks("python")[2])
            ran = sh(".venv/bin/python -W ignore supabase_example.py", SUPABASE_URL=api.url,
                     SUPABASE_SERVICE_KEY=sign_jwt({"role": "service_role"}))
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == "block"

        command_line = sh(blocks("sh")[1])
        assert command_line.returncode == 0, command_line.stderr
        assert "create or replace function public.log_message" in \
            (clone / "sessionlog.sql").read_text()
        assert (clone / "alice.jsonl").read_text().count("\n") >= 3
    finally:
        stopped = sh(".venv/bin/sessionlog --json server stop")
        if stopped.stdout.strip():
            data_dir = Path(json.loads(stopped.stdout)["data_dir"])
            if data_dir.parent.parent == embedded.ROOT_DATA_PARENT:
                shutil.rmtree(data_dir.parent, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
