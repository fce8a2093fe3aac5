"""Output of the command line: one JSON document with ``--json``, otherwise
aligned key/value lines or a simple table."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import click


def jsonable(value: Any) -> Any:
    """Results (dataclasses) as dicts; uuids and timestamps as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def dumps(value: Any, *, indent: int | None = 2) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False, indent=indent)


def echo_json(value: Any) -> None:
    click.echo(dumps(value))


def text(value: Any) -> str:
    """One value as a human reads it, on one line."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, (dict, list, tuple)):
        if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
            return ",".join(repr(v) if isinstance(v, float) else str(v) for v in value)
        return json.dumps(jsonable(value), ensure_ascii=False)
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def echo_pairs(pairs: Iterable[tuple[str, Any]]) -> None:
    """Aligned ``key  value`` lines."""
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        click.echo(f"{key:<{width}}  {text(value)}".rstrip())


def echo_result(result: Any) -> None:
    """A result dataclass as key/value lines."""
    echo_pairs((f.name, getattr(result, f.name)) for f in dataclasses.fields(result))


def short_time(value: dt.datetime | None) -> str:
    return "-" if value is None else value.isoformat(sep=" ", timespec="seconds")


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> None:
    """A simple table; the last column is not padded (it may be long)."""
    if not rows:
        click.echo(empty)
        return
    cells = [[text(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [v.ljust(w) for v, w in zip(values[:-1], widths[:-1])]
        return "  ".join([*padded, values[-1]]).rstrip()

    click.echo(line(headers))
    click.echo(line(["-" * w for w in widths]))
    for row in cells:
        click.echo(line(row))


def numbers(values: Sequence[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``3-5, 9``."""
    parts: list[str] = []
    start = prev = None
    for n in values:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ", ".join(parts)
