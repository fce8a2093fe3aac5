"""``sessionlog import``: JSON lines into ``log_messages``, batch by batch.

A batch is all-or-nothing in SQL. When one fails, the error names the bad
element (``messages[i]…``): the lines before it are sent, that line is
rejected, and the lines after it are sent again. An error that names no element (e.g. a string PostgreSQL
cannot store) is isolated by splitting the batch in halves. Lines that are
not JSON objects are rejected before anything is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .client import SessionLog
from .errors import SessionLogError

#: Keys an exported line carries beyond log_message's; informative, not sent.
EXPORT_ONLY_KEYS = ("position", "created_at")

_ELEMENT = re.compile(r"\bmessages\[(\d+)\]")


@dataclass
class Rejected:
    line: int
    error: str


@dataclass
class ImportSummary:
    inserted: int = 0
    duplicate: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    stopped: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "inserted": self.inserted,
            "duplicate": self.duplicate,
            "rejected": len(self.rejected),
            "rejected_lines": [r.line for r in self.rejected],
            "errors": [{"line": r.line, "error": r.error} for r in self.rejected],
            "stopped": self.stopped,
        }


class StopImport(Exception):
    """Raised inside the import when --stop-on-error meets a rejected line."""


@dataclass
class _Line:
    number: int
    message: dict[str, Any]


def parse_line(raw: bytes) -> dict[str, Any] | str:
    """A message object from one JSONL line, or the reason it is rejected."""
    try:
        value = json.loads(raw)
    except UnicodeDecodeError as exc:
        return f"not UTF-8: {exc.reason}"
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    if not isinstance(value, dict):
        return f"not a JSON object but a JSON {_json_type(value)}"
    for key in EXPORT_ONLY_KEYS:
        value.pop(key, None)
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array"


def _line_error(exc: SessionLogError) -> bool:
    """True when the error is about the data (rejects lines), False when the
    import cannot go on at all (connection lost, missing function, …)."""
    return bool(_ELEMENT.search(exc.message)) or (exc.sqlstate or "")[:2] in ("22", "23")


def _strip_index(message: str, index: int) -> str:
    """``invalid messages[3].role …`` -> ``invalid role …``: the batch index
    means nothing to the user, the line number (reported beside) does."""
    return message.replace(f"messages[{index}].", "").replace(f"messages[{index}]", "message")


class Importer:
    """Sends batches, isolates bad lines, keeps the counts."""

    def __init__(self, log: SessionLog, *, stop_on_error: bool) -> None:
        self.log = log
        self.stop_on_error = stop_on_error
        self.summary = ImportSummary()

    def reject(self, number: int, error: str) -> None:
        self.summary.rejected.append(Rejected(number, error))
        if self.stop_on_error:
            self.summary.stopped = True
            raise StopImport

    def send(self, lines: Sequence[_Line]) -> None:
        """Write ``lines`` in order, rejecting the bad ones.

        On an error naming ``messages[i]``: the lines before i are sent on
        their own (they passed the checks that found i, and may still fail a
        later check), line i is rejected, and the lines after it go on. An
        error naming no line halves the batch until it does.
        """
        while lines:
            try:
                results = self.log.log_messages(messages=[line.message for line in lines])
            except SessionLogError as exc:
                if not _line_error(exc):
                    raise
                match = _ELEMENT.search(exc.message)
                index = int(match.group(1)) if match else -1
                if 0 <= index < len(lines):
                    self.send(lines[:index])
                    self.reject(lines[index].number, _strip_index(str(exc), index))
                    lines = lines[index + 1:]
                elif len(lines) == 1:
                    self.reject(lines[0].number, str(exc))
                    return
                else:
                    middle = len(lines) // 2
                    self.send(lines[:middle])
                    lines = lines[middle:]
                continue
            for result in results:
                if result.duplicate:
                    self.summary.duplicate += 1
                else:
                    self.summary.inserted += 1
            return

    def run(
        self,
        raw_lines: Iterable[bytes],
        batch_size: int,
        progress: Callable[[int], None] = lambda n: None,
    ) -> ImportSummary:
        """Import every line; ``progress(n)`` after each n bytes read."""
        pending: list[_Line] = []
        try:
            for number, raw in enumerate(raw_lines, start=1):
                progress(len(raw))
                if not raw.strip():
                    continue  # blank lines are skipped, not counted
                parsed = parse_line(raw)
                if isinstance(parsed, str):
                    if self.stop_on_error:
                        self.send(pending)
                        pending = []
                    self.reject(number, parsed)
                    continue
                pending.append(_Line(number, parsed))
                if len(pending) >= batch_size:
                    self.send(pending)
                    pending = []
            self.send(pending)
        except StopImport:
            pass
        finally:
            self.summary.rejected.sort(key=lambda r: r.line)
        return self.summary
