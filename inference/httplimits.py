"""What prewarm's own HTTP/1.1 servers (the replica's and the Python gateway's) allow a client, in one place.

The defaults follow the servers these replace or sit beside: a request target of 8 KiB (nginx's
``large_client_header_buffers`` 8k, Apache's ``LimitRequestLine`` 8190; longer gets 414), 100 header fields (Apache's
``LimitRequestFields``) and 64 KiB of them in all (between nginx's 4 x 8k and Go's 1 MiB; room for long bearer tokens;
more gets 431), a head within 10 s of its first byte and a body within 30 s of its head (nginx's and Apache's client
timeouts are 60 s and 20-40 s; a client on a data-centre network sends a 4 MiB body in well under a second: slower is a
Slowloris, answered 408 and closed), idle connections closed after 60 s without a response, and 16 pipelined requests
per connection before the server stops reading it. A connection is idle, new or kept alive, until a request's first
byte: a client's pooled connection may wait for its first request longer than the head timeout, and an unasked-for
408 on it would be taken for the answer to the request sent next. Request smuggling is refused by llhttp itself (httptools): a request
with both Content-Length and Transfer-Encoding, two Content-Length fields, or a Transfer-Encoding not ending in chunked
is a parse error, answered 400 and closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prewarm.settings import Settings

IDLE, HEAD, BODY = 0, 1, 2  # where a connection is: no request byte yet (new or between requests), in a head, in a body


@dataclass(frozen=True)
class HttpLimits:
    """Bounds on one client's requests and on how slowly it may send them (see the module docstring)."""

    max_request_line_bytes: int = 8192
    max_headers: int = 100
    max_header_bytes: int = 65536
    max_pipelined: int = 16
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_request_line_bytes=settings.http_max_request_line_bytes,
            max_headers=settings.http_max_headers,
            max_header_bytes=settings.http_max_header_bytes,
            max_pipelined=settings.http_max_pipelined,
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            keepalive_timeout_s=settings.http_keepalive_timeout_s,
        )

    def check_url(self, url: bytes) -> None:
        """Raise RequestRejected (414) when the request target so far is over the limit."""
        if len(url) > self.max_request_line_bytes:
            raise RequestRejected(414, f"request target longer than {self.max_request_line_bytes} bytes")

    def check_headers(self, count: int, size: int) -> None:
        """Raise RequestRejected (431) past the header field count or total size."""
        if count > self.max_headers:
            raise RequestRejected(431, f"more than {self.max_headers} header fields")
        if size > self.max_header_bytes:
            raise RequestRejected(431, f"header fields larger than {self.max_header_bytes} bytes in all")

    def expired(self, phase: int, since: float, now: float) -> RequestRejected | None:
        """What to do with a connection in ``phase`` since ``since``: None (wait), or the rejection to send.

        An idle connection past its keep-alive gets status 0: close it without a response.
        """
        if phase == HEAD and now - since > self.header_timeout_s:
            return RequestRejected(408, f"request head not received within {self.header_timeout_s:g} s")
        if phase == BODY and now - since > self.body_timeout_s:
            return RequestRejected(408, f"request body not received within {self.body_timeout_s:g} s")
        if phase == IDLE and now - since > self.keepalive_timeout_s:
            return RequestRejected(0, "idle keep-alive connection")
        return None


class RequestRejected(Exception):
    """The request breaks a limit: answer ``status`` (0: nothing) with the message, then close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def rejection(error: BaseException) -> RequestRejected | None:
    """The RequestRejected raised inside an httptools callback (httptools wraps it), if that is what ``error`` is."""
    if isinstance(error, RequestRejected):
        return error
    context = error.__context__
    return context if isinstance(context, RequestRejected) else None


def with_head(allow: bytes) -> bytes:
    """An ``Allow`` value that lists HEAD wherever GET is allowed (the servers answer HEAD as GET)."""
    methods = [method.strip() for method in allow.split(b",") if method.strip()]
    if b"GET" in methods and b"HEAD" not in methods:
        methods.insert(methods.index(b"GET") + 1, b"HEAD")
    return b", ".join(methods)
