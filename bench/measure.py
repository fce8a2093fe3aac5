"""Timing loops and statistics.

A *sample* is one timed run of one case: calls, messages, wall time, the
latency of each call (single client) and the errors by SQLSTATE (concurrent
clients). Ratios are taken between samples of the same repeat, which ran
side by side, and summarized by their median and range over the repeats.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass
class Sample:
    calls: int
    messages: int
    elapsed: float
    latencies: list[float] = field(default_factory=list, repr=False)
    errors: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    #: One message per SQLSTATE seen, to tell what failed.
    error_examples: dict[str, str] = field(default_factory=dict)

    @property
    def per_call(self) -> float:
        """Seconds per successful call."""
        return self.elapsed / max(self.calls, 1)

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.elapsed if self.elapsed else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies, q)

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "messages": self.messages, "elapsed": self.elapsed,
            "per_call_us": self.per_call * 1e6, "messages_per_s": self.messages_per_s,
            "p50_us": self.percentile(50) * 1e6 if self.latencies else None,
            "p99_us": self.percentile(99) * 1e6 if self.latencies else None,
            "errors": dict(self.errors), "retries": self.retries,
            "error_examples": self.error_examples,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run_single(step: Callable[[], int], seconds: float, *, warmup: int = 3,
               min_calls: int = 3) -> Sample:
    """Call ``step`` for ``seconds`` (at least ``min_calls`` times), after
    ``warmup`` untimed calls (statement preparation, plan and function caches)."""
    for _ in range(warmup):
        step()
    latencies: list[float] = []
    messages = 0
    start = now = time.perf_counter()
    end = start + seconds
    while now < end or len(latencies) < min_calls:
        t0 = time.perf_counter()
        messages += step()
        now = time.perf_counter()
        latencies.append(now - t0)
    return Sample(calls=len(latencies), messages=messages, elapsed=now - start,
                  latencies=latencies, retries=getattr(step, "retries", 0))


def run_concurrent(steps: Sequence[Callable[[], int]], seconds: float, *,
                   min_calls: int = 1) -> Sample:
    """Each step in its own thread (each holds its own connection), started
    together, for ``seconds``; a failed call is counted by SQLSTATE and the
    client goes on. ``min_calls`` per client bounds very short runs."""
    barrier = threading.Barrier(len(steps) + 1)
    stop = threading.Event()
    counts = [[0, 0] for _ in steps]
    errors: list[Counter[str]] = [Counter() for _ in steps]
    examples: dict[str, str] = {}

    def client(i: int) -> None:
        step = steps[i]
        barrier.wait()
        done = 0
        while not stop.is_set() or done < min_calls:
            done += 1
            try:
                counts[i][1] += step()
                counts[i][0] += 1
            except psycopg.Error as exc:
                code = exc.sqlstate or type(exc).__name__
                errors[i][code] += 1
                examples.setdefault(code, str(exc).splitlines()[0])
                conn = getattr(step, "conn", None)
                if conn is not None and not conn.autocommit and not conn.closed:
                    conn.rollback()
            except Exception as exc:  # noqa: BLE001 - counted, the client goes on
                errors[i][type(exc).__name__] += 1
                examples.setdefault(type(exc).__name__, str(exc))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(steps))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    total_errors: Counter[str] = Counter()
    for e in errors:
        total_errors.update(e)
    return Sample(calls=sum(c[0] for c in counts), messages=sum(c[1] for c in counts),
                  elapsed=elapsed, errors=total_errors, error_examples=examples,
                  retries=sum(getattr(s, "retries", 0) for s in steps))


def rotate(items: Sequence[T], r: int) -> list[T]:
    """``items`` starting at index r (mod len): the order of round r."""
    items = list(items)
    if not items:
        return items
    r %= len(items)
    return items[r:] + items[:r]


def merge(into: Sample, more: Sample) -> None:
    into.calls += more.calls
    into.messages += more.messages
    into.elapsed += more.elapsed
    into.latencies += more.latencies
    into.errors.update(more.errors)
    for code, text in more.error_examples.items():
        into.error_examples.setdefault(code, text)
    into.retries = more.retries  # steps count their retries cumulatively


def run_interleaved(steps: Mapping[K, Callable[[], int]], seconds: float, *, slices: int = 10,
                    warmup: int = 3) -> dict[K, Sample]:
    """Each step for ``seconds`` in all, in ``slices`` turns taken round
    robin (order rotated each turn), so that every case sees the same
    background load as the others: on a shared machine the load changes
    from second to second, and a ratio of two cases measured a few seconds
    apart would mostly measure that."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    total = {k: Sample(0, 0, 0.0) for k in steps}
    for i in range(slices):
        for k in rotate(list(steps), i):
            merge(total[k], run_single(steps[k], seconds / slices, warmup=0, min_calls=1))
    return total


def run_concurrent_interleaved(make_steps: Mapping[K, Callable[[], Sequence[Callable[[], int]]]],
                               seconds: float, *, slices: int = 4) -> dict[K, Sample]:
    """run_concurrent for each key, in ``slices`` turns like
    run_interleaved; ``make_steps[k]()`` gives a turn's fresh clients."""
    total = {k: Sample(0, 0, 0.0) for k in make_steps}
    for i in range(slices):
        for k in rotate(list(make_steps), i):
            sample = run_concurrent(make_steps[k](), seconds / slices)
            retries = total[k].retries + sample.retries
            merge(total[k], sample)
            total[k].retries = retries
    return total


@dataclass
class Summary:
    """Median and range of a figure over the repeats."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(values), min(values), max(values), len(values))

    def fmt(self, digits: int = 2, suffix: str = "") -> str:
        if self.n == 0:
            return "n/a"
        if self.n == 1:
            return f"{self.median:.{digits}f}{suffix}"
        return f"{self.median:.{digits}f}{suffix} ({self.low:.{digits}f}–{self.high:.{digits}f})"

    def to_json(self) -> dict[str, float]:
        return {"median": self.median, "low": self.low, "high": self.high, "n": self.n}
