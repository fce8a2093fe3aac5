"""A delaying TCP proxy: every byte pays ``delay`` seconds each way.

    python -m bench.proxy --listen-port 6000 --target-port 5432 --delay-ms 0.5

It listens on 127.0.0.1 only and forwards to 127.0.0.1. Each chunk read from
one side is written to the other ``delay`` after it arrived, in order, so a
request/response round trip pays 2 × delay (plus the proxy's own hops) and
throughput is not capped (chunks in flight overlap). asyncio's default epoll selector sleeps in whole
milliseconds (it rounds 0.5 ms up to 1 ms); the select() selector takes a
microsecond timeout, so the loop runs on it. The benchmark runs the proxy in
its own process, so it shares no interpreter lock with the clients, and
measures the round trip it really adds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path
from typing import Self

HOST = "127.0.0.1"


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk ``delay`` after it arrived. The
    write is a timer callback (no task switch on the way); due times only
    grow, so chunks leave in the order they came."""
    loop = asyncio.get_running_loop()
    last = 0.0
    while True:
        data = await reader.read(65536)
        last = max(loop.time() + delay, last + 1e-9)
        if not data:
            loop.call_at(last, writer.close)
            return
        loop.call_at(last, writer.write, data)


async def _serve(listen_port: int, target_port: int, delay: float, ready_fd: int | None) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(HOST, target_port)
            await asyncio.gather(
                _pump(client_reader, server_writer, delay),
                _pump(server_reader, client_writer, delay),
            )
        except (OSError, asyncio.CancelledError):
            client_writer.close()

    server = await asyncio.start_server(handle, HOST, listen_port)
    if ready_fd is not None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    # Close the connections still open, quietly.
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0)  # let the tasks' done callbacks run


def _precise_timers() -> None:
    """Linux lets a sleep overrun by the thread's timer slack (50 µs by
    default); 1 µs instead, where prctl is reachable."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK


def serve(listen_port: int, target_port: int, delay: float, ready_fd: int | None = None) -> None:
    with contextlib.suppress(OSError):
        os.nice(-10)  # the network is not a client: do not let it queue for a CPU
    _precise_timers()
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(_serve(listen_port, target_port, delay, ready_fd))
    finally:
        loop.close()


class DelayProxy:
    """The proxy in a child process; a context manager that always stops it."""

    def __init__(self, listen_port: int, target_port: int, delay_ms: float) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self.delay_ms = delay_ms
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        read_fd, write_fd = os.pipe()
        root = Path(__file__).resolve().parents[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.proxy", "--listen-port", str(self.listen_port),
             "--target-port", str(self.target_port), "--delay-ms", str(self.delay_ms),
             "--ready-fd", str(write_fd)],
            cwd=root, pass_fds=(write_fd,),
        )
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as ready:
            line = ready.readline()  # b"" if the child died first
        if line != b"ready\n":
            self.stop()
            raise RuntimeError("the delaying proxy did not start")
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.5, help="added each way (default 0.5)")
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    serve(args.listen_port, args.target_port, args.delay_ms / 1000, args.ready_fd)


if __name__ == "__main__":
    main()
