"""The ``sessionlog`` command line (also ``python cli.py`` from a checkout).

Every command calls one SQL function through ``SessionLog``; there is no data
logic here. With neither ``--dsn`` nor ``DATABASE_URL``, an embedded
PostgreSQL is started in a per-user data directory and migrated on first use.
A refused request prints one line, ``error: <message> (hint: <hint>)``, on
stderr and exits 1; usage errors exit 2.

The commands live by area: ``_cli_messages`` (sessions and messages),
``_cli_auth`` (behavioral vectors and authentication decisions),
``_cli_data`` (import and export), ``_cli_server`` (schema, embedded server,
SQL bundle); ``_cli_common`` holds what they share.
"""

from __future__ import annotations

from pathlib import Path

import click

from . import _cli_auth, _cli_data, _cli_messages, _cli_server, embedded
from ._cli_common import MainGroup, State


@click.group(cls=MainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dsn", envvar="DATABASE_URL", metavar="DSN",
              help="PostgreSQL connection string (libpq URI or key=value) [env: DATABASE_URL]. "
                   "Without it, the embedded server is used.")
@click.option("--data-dir", envvar=embedded.DATA_DIR_ENV, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help=f"Data directory of the embedded server [env: {embedded.DATA_DIR_ENV}; "
                   "default: a per-user directory].")
@click.option("--json", "json_output", is_flag=True,
              help="Print one JSON document (a listing is an array) instead of text; "
                   "also accepted after the command name.")
@click.version_option(package_name="sessionlog")
@click.pass_context
def main(ctx: click.Context, dsn: str | None, data_dir: Path | None, json_output: bool) -> None:
    """Log chat, AI and behavioral-auth sessions in PostgreSQL.

    Every write is one atomic call of a SQL function that creates the user
    and the session when they do not exist yet. With neither --dsn nor
    DATABASE_URL, an embedded PostgreSQL is started in a per-user data
    directory (kept between runs) and migrated on first use.

    \b
    Examples:
      sessionlog log alice chat-1 user "hello"
      sessionlog history chat-1 --user alice
      sessionlog --dsn postgresql://app@db/app sessions alice --json
      python cli.py log alice chat-1 user "hello"    # from a checkout
    """
    ctx.obj = State(dsn_option=dsn or None, data_dir=data_dir, json=json_output,
                    ctx=ctx.find_root())


for _module in (_cli_messages, _cli_auth, _cli_data, _cli_server):
    for _command in _module.COMMANDS:
        main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
