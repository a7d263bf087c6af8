"""A stand-in control API that records the activator's pushes (a real HTTP server in a thread)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PushLog:
    """Every push received: (path, body, authorization header)."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, dict[str, int], str]] = []
        self.lock = threading.Lock()

    def held_counts(self) -> list[int]:
        with self.lock:
            return [body["held_requests"] for _, body, _ in self.pushes]


@contextmanager
def push_receiver() -> Iterator[tuple[str, PushLog]]:
    """Yields the receiver's base URL and the log of pushes."""
    received = PushLog()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length))
            with received.lock:
                received.pushes.append((self.path, body, self.headers.get("authorization", "")))
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
