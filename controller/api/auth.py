"""Bearer-token auth: admin tokens may change state, read tokens may only read; compared in constant time.

Tokens come from settings (``PREWARM_ADMIN_TOKENS``, ``PREWARM_ADMIN_TOKENS_FILE``, ``PREWARM_READ_TOKENS``). A
``name:token`` entry names its holder, who becomes the ``author`` of changes; a bare token is ``admin-<n>`` or
``reader-<n>`` by position. Tokens are never logged: only the holder's name is.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from prewarm.settings import Settings

logger = logging.getLogger(__name__)

IDENTITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
CONFIGURE_HINT = (
    "set PREWARM_ADMIN_TOKENS (comma-separated, 'name:token' or token) or PREWARM_ADMIN_TOKENS_FILE "
    "and restart the controller"
)


class Role(StrEnum):
    """What a token holder may do."""

    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who made a request: the name recorded as ``author`` and what they may do."""

    name: str
    role: Role


@dataclass(frozen=True, repr=False)
class _Credential:
    token_sha256: bytes  # digests compare in constant time whatever the tokens' lengths
    principal: Principal


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class AuthError(Exception):
    """The request may not proceed; ``status`` is 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def parse_tokens(text: str, role: Role, *, first_index: int = 1) -> list[_Credential]:
    """Credentials from comma- or newline-separated entries; blank entries and ``#`` comment lines are skipped."""
    credentials: list[_Credential] = []
    entries = [entry.strip() for line in text.splitlines() for entry in line.split(",")]
    index = first_index
    for entry in entries:
        if not entry or entry.startswith("#"):
            continue
        name, sep, token = entry.partition(":")
        if not (sep and token and IDENTITY.match(name)):
            name, token = f"{'admin' if role is Role.ADMIN else 'reader'}-{index}", entry
        credentials.append(_Credential(_digest(token), Principal(name, role)))
        index += 1
    return credentials


class TokenAuthenticator:
    """Checks bearer tokens against the configured ones without leaking timing or token text."""

    def __init__(self, credentials: list[_Credential], *, protect_reads: bool) -> None:
        self._credentials = credentials
        self.protect_reads = protect_reads
        self.has_admin = any(c.principal.role is Role.ADMIN for c in credentials)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenAuthenticator:
        """Read tokens from the settings and the tokens file (read once, at start)."""
        admin = parse_tokens(settings.admin_tokens.get_secret_value(), Role.ADMIN)
        if settings.admin_tokens_file:
            text = Path(settings.admin_tokens_file).read_text(encoding="utf-8")
            admin += parse_tokens(text, Role.ADMIN, first_index=len(admin) + 1)
        readers = parse_tokens(settings.read_tokens.get_secret_value(), Role.READ)
        if not admin:
            logger.warning(
                "no admin token configured: every change through the API is refused (%s)", CONFIGURE_HINT
            )
        logger.info(
            "API auth: %d admin and %d read token(s); reads protected: %s",
            len(admin),
            len(readers),
            settings.protect_reads,
        )
        return cls(admin + readers, protect_reads=settings.protect_reads)

    def identify(self, authorization: str | None) -> Principal | None:
        """The holder of the bearer token in an ``Authorization`` header; None without a header.

        Raises AuthError(401) for a malformed header or an unknown token.
        """
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "the Authorization header must be 'Bearer <token>'")
        candidate = _digest(token)
        found: Principal | None = None
        for credential in self._credentials:  # no early exit: the time taken does not say which token matched
            if hmac.compare_digest(candidate, credential.token_sha256) and found is None:
                found = credential.principal
        if found is None:
            raise AuthError(401, "the bearer token is not valid")
        return found

    def require_admin(self, authorization: str | None) -> Principal:
        """The admin making a change, or AuthError: 401 without a valid token, 403 for a read-only token."""
        if not self.has_admin:
            raise AuthError(401, f"changes need an admin token and none is configured: {CONFIGURE_HINT}")
        principal = self.identify(authorization)
        if principal is None:
            raise AuthError(401, "this endpoint changes state: send 'Authorization: Bearer <admin token>'")
        if principal.role is not Role.ADMIN:
            raise AuthError(403, f"token of {principal.name!r} may read but not change; use an admin token")
        return principal

    def require_reader(self, authorization: str | None) -> Principal | None:
        """Anyone when reads are open (a sent token is still checked); a valid token when they are protected."""
        principal = self.identify(authorization)
        if principal is None and self.protect_reads:
            raise AuthError(
                401, "reads are protected (PREWARM_PROTECT_READS): send 'Authorization: Bearer <token>'"
            )
        return principal
