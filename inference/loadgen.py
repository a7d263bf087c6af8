"""Open-loop HTTP load generator: requests leave at their intended times whatever the server does.

Latency is counted from the *intended* send time, so a slow server shows up as queueing (no coordinated
omission). Raw asyncio sockets over keep-alive HTTP/1.1 connections, one request per connection at a time; a
request whose time has come waits for a free connection (that wait is part of its latency).

Like any HTTP client with a connection pool, it expects a server to close keep-alive connections that sit idle (a
keep-alive timeout): a connection closed while idle is replaced, and a request that went out on a connection that
had been idle, which the server then closed without a byte of answer, is sent once more on a new connection (the
server closed it as idle just as the request left; the requests are inference, safe to repeat). Those repeats are
counted (``LoadResult.retried``); any other failure counts as one, and so does a repeat that fails again. Reusable by
the gateway benchmark and the demo:

    result = run_open_loop("http://127.0.0.1:8000/v2/models/digits_mlp/infer", body, [RateStep(10, 1000)])
    print(result.summary())

or ``python -m inference.loadgen URL --body-file body.json --rate 1000 --duration 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import cast
from urllib.parse import urlsplit

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateStep:
    """Send at ``rate_rps`` requests per second for ``duration_s`` seconds."""

    duration_s: float
    rate_rps: float


@dataclass(frozen=True)
class LoadSummary:
    """Headline figures of one run; latencies in milliseconds from the intended send time."""

    offered_rps: float
    sent: int
    ok: int
    errors: int
    achieved_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    retried: int = 0  # requests sent again after the server closed an idle connection just as they left on it

    def row(self) -> str:
        return (
            f"offered {self.offered_rps:8.0f}/s  achieved {self.achieved_rps:8.0f}/s  ok {self.ok:7d}  "
            f"errors {self.errors:5d}  p50 {self.p50_ms:8.2f} ms  p95 {self.p95_ms:8.2f} ms  p99 {self.p99_ms:8.2f} ms"
            + (f"  retried {self.retried}" if self.retried else "")
        )


@dataclass(frozen=True)
class LoadResult:
    """Per request: intended send time (s from start), latency (s; NaN when it failed) and HTTP status (0 = none);
    ``retried``: how many were sent a second time because the idle connection they left on was closed unanswered."""

    intended_s: np.ndarray
    latency_s: np.ndarray
    status: np.ndarray
    duration_s: float
    retried: int = 0
    sent_s: np.ndarray | None = None  # when each request actually left (s from start; NaN: never sent)

    def send_slip_s(self) -> np.ndarray:
        """How late each sent request left against its intended time: the generator's own lag (a busy machine
        delays an open-loop generator too; its latencies still count from the intended time)."""
        if self.sent_s is None:
            return np.zeros(0)
        slip = self.sent_s - self.intended_s
        return slip[np.isfinite(slip)]

    def summary(self) -> LoadSummary:
        ok = self.status == 200
        # failed requests count in the latency percentiles at their time of failure/timeout (never hidden)
        latencies_ms = np.where(np.isnan(self.latency_s), np.inf, self.latency_s) * 1000.0
        finite = latencies_ms[np.isfinite(latencies_ms)] if latencies_ms.size else latencies_ms

        def pct(q: float) -> float:
            if latencies_ms.size == 0:
                return math.nan
            with np.errstate(invalid="ignore"):  # inf - inf between two failed requests
                value = float(np.percentile(latencies_ms, q))
            return value if math.isfinite(value) else math.inf

        sent = int(self.intended_s.size)
        return LoadSummary(
            offered_rps=sent / self.duration_s if self.duration_s else 0.0,
            sent=sent,
            ok=int(ok.sum()),
            errors=int(sent - ok.sum()),
            achieved_rps=float(ok.sum()) / self.duration_s if self.duration_s else 0.0,
            p50_ms=pct(50),
            p95_ms=pct(95),
            p99_ms=pct(99),
            max_ms=float(finite.max()) if finite.size else math.nan,
            retried=self.retried,
        )


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, callback-driven: sends the prepared request, parses one response
    (Content-Length or chunked), records it, and immediately takes the next pending request if any."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.index = -1  # request in progress, -1 when idle
        self.deadline = 0.0
        self.was_idle = False  # the request in progress went out on a connection that had been waiting idle
        self.timed_out = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.run.lost(self)

    def send(self, index: int, was_idle: bool) -> None:
        assert self.transport is not None
        self.index, self.was_idle = index, was_idle
        now = perf_counter()
        self.deadline = now + self.run.timeout_s
        if np.isnan(self.run.sent_s[index]):  # the first send counts (a resend after an idle close does not)
            self.run.sent_s[index] = now - self.run.t0
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.index < 0:
            # Bytes no request asked for (say a 408 sent to an idle connection): this connection is out of step.
            logger.info("closing a connection on which the server sent %d unrequested bytes", len(self.buffer))
            self.buffer.clear()
            self._close()
            return
        while self.index >= 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[: end + 4]).lower()
            index = head.find(b"\r\ncontent-length:")
            if index >= 0:
                length = int(head[index + 17 : head.index(b"\r\n", index + 2)])
                total = end + 4 + length
                if len(self.buffer) < total:
                    return
            elif b"transfer-encoding: chunked" in head:
                total = _chunked_end(self.buffer, end + 4)
                if total < 0:
                    return
            else:
                total = end + 4
            status = int(head[9:12])
            del self.buffer[:total]
            request_index, self.index = self.index, -1
            if b"\r\nconnection: close" in head:
                self._close()  # before finish(), which would hand it the next request
            self.run.finish(self, request_index, status)

    def _close(self) -> None:
        """Close (connection_lost follows and replaces it); from now on it takes no request."""
        if self.transport is not None:
            self.transport.close()
            self.transport = None


def _chunked_end(buffer: bytearray, start: int) -> int:
    """Offset just past a complete chunked body starting at ``start``, or -1 while incomplete."""
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return -1
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        position = line_end + 2 + size + 2
        if position > len(buffer):
            return -1
        if size == 0:
            return position


class _Run:
    """State of one open-loop run: pending requests, idle connections, results."""

    def __init__(
        self, host: str, port: int, request: bytes, intended_s: np.ndarray, timeout_s: float
    ) -> None:
        self.host, self.port, self.request, self.timeout_s = host, port, request, timeout_s
        self.intended_s = intended_s
        self.latency_s = np.full(len(intended_s), np.nan)
        self.status = np.zeros(len(intended_s), dtype=np.int32)
        self.pending: deque[int] = deque()
        self.idle: deque[_Connection] = deque()
        self.busy: set[_Connection] = set()
        self.done = 0
        self.t0 = 0.0
        self.opening = 0
        self.resent = np.zeros(len(intended_s), dtype=bool)
        self.sent_s = np.full(len(intended_s), np.nan)
        self.retried = 0
        self.stopping = False  # the run is over: closed connections are not replaced

    def submit(self, index: int) -> None:
        while self.idle:
            connection = self.idle.popleft()
            if connection.transport is not None:
                self.busy.add(connection)
                connection.send(index, was_idle=True)
                return
        self.pending.append(index)

    def record(self, index: int, status: int) -> None:
        self.status[index] = status
        if status:
            self.latency_s[index] = perf_counter() - (self.t0 + self.intended_s[index])
        self.done += 1

    def finish(self, connection: _Connection, index: int, status: int) -> None:
        """Record a response and hand the connection the next pending request, or keep it idle."""
        self.record(index, status)
        self.busy.discard(connection)
        if connection.transport is None:
            return  # closing: connection_lost replaces it
        if self.pending:
            self.busy.add(connection)
            connection.send(self.pending.popleft(), was_idle=False)
        else:
            self.idle.append(connection)

    def lost(self, connection: _Connection) -> None:
        """A connection closed: fail (or send again) its request, and open another in its place."""
        self.busy.discard(connection)
        with contextlib.suppress(ValueError):
            self.idle.remove(connection)
        index, connection.index = connection.index, -1
        again = None
        if index >= 0:
            if connection.was_idle and not connection.buffer and not connection.timed_out and not self.resent[index]:
                self.resent[index] = True  # the server closed it as idle as the request left: send it again, once
                self.retried += 1
                again = index
            else:
                self.record(index, 0)
        if not self.stopping:
            self.reopen(again)

    def reopen(self, first: int | None = None) -> None:
        self.opening += 1
        asyncio.get_running_loop().create_task(self._reopen(first))

    async def _reopen(self, first: int | None) -> None:
        try:
            await self.open_one(first)
        except OSError:
            if first is not None:
                self.record(first, 0)  # the server is gone: that request failed
            await asyncio.sleep(0.05)
            if not self.stopping:
                self.reopen()
        finally:
            self.opening -= 1

    async def open_one(self, first: int | None = None) -> None:
        """Open a connection; send ``first`` on it, else the oldest pending request, else keep it idle."""
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        if first is None and self.pending:
            first = self.pending.popleft()
        if first is not None:
            self.busy.add(connection)
            connection.send(first, was_idle=False)
        else:
            self.idle.append(connection)

    def expire(self, now: float) -> None:
        """Close connections whose request ran past the timeout (the request counts as failed)."""
        for connection in [c for c in self.busy if c.index >= 0 and c.deadline < now]:
            if connection.transport is not None:
                connection.timed_out = True
                connection.transport.abort()


def build_request(
    url: str, body: bytes, headers: Mapping[str, str] | None = None, method: str = "POST"
) -> bytes:
    """The raw HTTP/1.1 request bytes sent for every request of a run."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json"]
    if method != "GET" or body:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def intended_times(schedule: Sequence[RateStep]) -> np.ndarray:
    """Evenly spaced send times (seconds from the start) of every request of the schedule."""
    times, offset = [], 0.0
    for step in schedule:
        count = round(step.duration_s * step.rate_rps)
        times.append(offset + np.arange(count) / step.rate_rps)
        offset += step.duration_s
    return np.concatenate(times) if times else np.zeros(0)


async def open_loop(
    url: str,
    body: bytes,
    schedule: Sequence[RateStep],
    *,
    connections: int = 64,
    timeout_s: float = 5.0,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
) -> LoadResult:
    """Send requests at evenly spaced intended times per step; wait for the stragglers (bounded by timeout_s)."""
    parts = urlsplit(url)
    run = _Run(
        parts.hostname or "127.0.0.1",
        parts.port or 80,
        build_request(url, body, headers, method),
        intended_times(schedule),
        timeout_s,
    )
    total = len(run.intended_s)
    duration_s = sum(step.duration_s for step in schedule)
    # open the connections before the clock starts so connection setup is not counted as load
    await asyncio.gather(*(run.open_one() for _ in range(connections)))
    run.t0 = perf_counter() + 0.02  # uvloop's loop.time() ticks in whole milliseconds: too coarse here
    next_index, last_expiry = 0, 0.0
    while next_index < total:
        now = perf_counter() - run.t0
        while next_index < total and run.intended_s[next_index] <= now:
            run.submit(next_index)
            next_index += 1
        if now - last_expiry > 0.1:
            run.expire(perf_counter())
            last_expiry = now
        if next_index < total:
            await asyncio.sleep(max(0.0, run.intended_s[next_index] - (perf_counter() - run.t0)))
    end = perf_counter() + timeout_s + 1.0
    while run.done < total and perf_counter() < end:
        run.expire(perf_counter())
        await asyncio.sleep(0.01)
    if run.done < total:
        logger.warning("%d requests unanswered at the end of the run", total - run.done)
    run.stopping = True
    for connection in [*run.idle, *run.busy]:
        if connection.transport is not None:
            connection.transport.close()
    return LoadResult(run.intended_s, run.latency_s, run.status, duration_s, run.retried, run.sent_s)


def run_open_loop(
    url: str,
    body: bytes,
    schedule: Sequence[RateStep],
    **options: object,
) -> LoadResult:
    """``open_loop`` on a fresh event loop (uvloop when installed)."""
    try:
        import uvloop

        return uvloop.run(open_loop(url, body, schedule, **options))  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(open_loop(url, body, schedule, **options))  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.loadgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--body-file", type=Path, help="request body (default: a 1-row digits V2 body)")
    parser.add_argument("--rate", type=float, action="append", help="req/s; repeat for several steps")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    if args.body_file:
        body = args.body_file.read_bytes()
    else:
        from inference.testing import digits_body

        body = digits_body()
    for rate in args.rate or [1000.0]:
        result = run_open_loop(
            args.url,
            body,
            [RateStep(args.duration, rate)],
            connections=args.connections,
            timeout_s=args.timeout,
        )
        print(result.summary().row())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
