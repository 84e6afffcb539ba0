"""A small closed-loop HTTP/1.1 load generator for loopback benchmarks.

Each of ``concurrency`` workers holds one keep-alive connection and sends the next
request as soon as the previous answer is read, so concurrency is exact and the
generator adds no queueing of its own. It speaks raw HTTP/1.1 over asyncio streams
(uvloop when installed) instead of using an HTTP client library: on a 2-core machine
the generator shares the CPUs with the server under test, and a client library's
per-request cost (a few hundred microseconds) would show up in the figures.

Bounded by design: every point stops at ``duration_s`` or ``max_requests``, whichever
comes first, and each request has its own timeout. Non-2xx answers, timeouts and
connection failures all count as errors.

Run as a script it measures one point and prints it as JSON, so the benchmark can run
it in its own process (its own CPU, its own GIL) next to the servers it measures:

    python bench/httpload.py --url http://127.0.0.1:8000/iris/predict --body-file req.json -c 32 -d 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOOPBACK_PREFIXES = ("127.", "localhost", "[::1]", "::1")
REQUEST_TIMEOUT_S = 30.0
# Header the servers under test set to how long the replica spent in parse + predict + serialise.
TIMING_HEADER = b"x-inference-ms"


@dataclass
class PointResult:
    """One measured point: a server, a concurrency, and what came back."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    server_ms: float | None = field(default=None, metadata={"help": "mean of the x-inference-ms header"})
    statuses: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    cpu_s: dict[str, float] = field(default_factory=dict)
    machine_busy: float | None = None


def process_cpu_s(pid: int) -> float | None:
    """utime + stime of one process, in seconds (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU seconds spent by named groups of processes over the measured window."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.before: dict[int, float] = {}
        self.machine_before = (0, 0)
        self.client_before = 0.0

    def start(self) -> None:
        self.before = {pid: cpu for pids in self.groups.values() for pid in pids
                       if (cpu := process_cpu_s(pid)) is not None}
        self.machine_before = machine_ticks()
        self.client_before = time.process_time()

    def stop(self) -> tuple[dict[str, float], float | None]:
        used: dict[str, float] = {"client": time.process_time() - self.client_before}
        for name, pids in self.groups.items():
            total = 0.0
            for pid in pids:
                now = process_cpu_s(pid)
                if now is not None and pid in self.before:
                    total += now - self.before[pid]
            used[name] = total
        busy, total = machine_ticks()
        spent = total - self.machine_before[1]
        # Everything the machine's CPUs did in the window, ours or not: the benchmark
        # subtracts its own processes to show how busy the rest of the machine was.
        used["machine"] = (busy - self.machine_before[0]) / CLOCK_TICKS
        return used, ((busy - self.machine_before[0]) / spent if spent > 0 else None)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a fixed request."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.host, self.port, self.request = host, port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def send(self) -> tuple[int, float | None]:
        """Send the request once; return the status and the server's timing header."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, _, header_block = head.partition(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length: int | None = None
        chunked = close_after = False
        server_ms: float | None = None
        for line in header_block.split(b"\r\n"):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close_after = True
            elif name == TIMING_HEADER:
                with contextlib.suppress(ValueError):
                    server_ms = float(value)
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length is not None:
            await self.reader.readexactly(length)
        else:
            await self.reader.read()  # no length: the body runs to the end of the connection
            close_after = True
        if close_after:
            await self.close()
        return status, server_ms


def build_request(url: str, body: bytes, content_type: str = "application/json") -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if not host.startswith(LOOPBACK_PREFIXES):
        # This tool is for loopback benchmarks only; refuse anything else outright.
        raise SystemExit(f"refusing to send load to non-loopback host {host!r}")
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return host, port, head.encode() + body


async def measure(url: str, body: bytes, concurrency: int, duration_s: float, warmup_s: float = 0.0,
                  max_requests: int = 200_000, watch: dict[str, list[int]] | None = None) -> PointResult:
    """Warm up, then run ``concurrency`` closed-loop workers for ``duration_s`` (or ``max_requests``)."""
    host, port, request = build_request(url, body)
    connections = [Connection(host, port, request) for _ in range(concurrency)]
    latencies: list[float] = []
    server_times: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    first_error = ""
    budget = max_requests

    async def worker(connection: Connection, deadline: float, record: bool) -> None:
        nonlocal errors, first_error, budget
        while time.perf_counter() < deadline and budget > 0:
            if record:
                budget -= 1
            started = time.perf_counter()
            try:
                status, server_ms = await asyncio.wait_for(connection.send(), REQUEST_TIMEOUT_S)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                    ValueError, IndexError) as exc:
                await connection.close()
                if record:
                    errors += 1
                    statuses["conn-error"] = statuses.get("conn-error", 0) + 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.01)  # do not spin on a refused connection
                continue
            if not record:
                continue
            latencies.append(time.perf_counter() - started)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if not 200 <= status < 300:
                errors += 1
                first_error = first_error or f"HTTP {status}"
            if server_ms is not None:
                server_times.append(server_ms)

    try:
        if warmup_s > 0:
            deadline = time.perf_counter() + warmup_s
            await asyncio.gather(*(worker(c, deadline, record=False) for c in connections))
        meter = CpuMeter(watch or {})
        meter.start()
        started = time.perf_counter()
        deadline = started + duration_s
        await asyncio.gather(*(worker(c, deadline, record=True) for c in connections))
        elapsed = time.perf_counter() - started
        cpu_s, machine_busy = meter.stop()
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    ordered = sorted(latencies)
    ok = len(latencies) - sum(n for s, n in statuses.items() if s.isdigit() and not 200 <= int(s) < 300)
    return PointResult(
        concurrency=concurrency,
        requests=len(latencies) + statuses.get("conn-error", 0),
        errors=errors,
        seconds=elapsed,
        rps=ok / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p90_ms=percentile(ordered, 0.90) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        mean_ms=(statistics.fmean(ordered) * 1000) if ordered else 0.0,
        server_ms=statistics.fmean(server_times) if server_times else None,
        statuses=statuses,
        first_error=first_error,
        cpu_s=cpu_s,
        machine_busy=machine_busy,
    )


def run(coroutine):  # type: ignore[no-untyped-def]
    """asyncio.run with uvloop when it is installed (a cheaper event loop for the generator)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def serve_trivial(port: int, lifetime_s: float) -> None:
    """A minimal keep-alive HTTP/1.1 server answering every request with a fixed JSON body.

    It measures the generator's own ceiling: whatever rate the generator reaches against
    it (both on the same 2 cores) is far above what a real model server can take, so a
    real server's figure is not the generator's limit. It stops by itself after
    ``lifetime_s`` in case nobody stops it.
    """
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n"
              b"\r\n{\"predictions\": [0]}")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await asyncio.sleep(lifetime_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Closed-loop HTTP/1.1 POST load on a loopback URL; prints JSON.")
    parser.add_argument("--trivial-server", type=int, metavar="PORT",
                        help="instead of sending load, serve fixed answers on 127.0.0.1:PORT (for the generator's ceiling)")
    parser.add_argument("--lifetime", type=float, default=120.0, help="--trivial-server stops after this many seconds")
    parser.add_argument("--url")
    parser.add_argument("--body-file", type=Path)
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("-w", "--warmup", type=float, default=2.0, help="seconds of unrecorded warm-up first")
    parser.add_argument("-n", "--max-requests", type=int, default=200_000, help="cap on recorded requests")
    parser.add_argument("--watch", action="append", default=[], metavar="NAME=PID[,PID…]",
                        help="report CPU seconds these processes spent while measuring")
    args = parser.parse_args(argv)
    if args.trivial_server is not None:
        run(serve_trivial(args.trivial_server, args.lifetime))
        return 0
    if not args.url or args.body_file is None:
        parser.error("--url and --body-file are required")
    body = args.body_file.read_bytes()
    watch: dict[str, list[int]] = {}
    for item in args.watch:
        name, _, pids = item.partition("=")
        watch[name] = [int(p) for p in pids.split(",") if p]
    result = run(measure(args.url, body, args.concurrency, args.duration, args.warmup, args.max_requests, watch))
    json.dump(asdict(result), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
