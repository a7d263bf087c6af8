"""Logging set-up for every prewarm process: readable text lines (default) or one JSON object per line, and
secrets (tokens, database passwords) redacted from every record whatever the format.

A record's ``extra`` fields ``deployment``, ``source`` and ``stage`` become JSON fields, so a log pipeline can
filter one deployment's decisions without parsing messages.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

EXTRA_FIELDS = ("deployment", "source", "stage")
URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]+)@", re.I)
BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
REDACTED = "***"


class RedactingFilter(logging.Filter):
    """Replaces known secrets, passwords in URLs and bearer tokens in a record's text before any handler sees it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        text = URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
        text = BEARER.sub(lambda m: f"{m[1]}{REDACTED}", text)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the extra fields present, and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str = "text", secrets: Iterable[str] = ()) -> None:
    """Log to stderr in ``log_format`` ('text' or 'json'), with ``secrets`` redacted."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def settings_secrets(settings: object) -> list[str]:
    """The secret values in the settings: admin and read tokens (with their names stripped), the database
    password."""
    from sqlalchemy.engine import make_url

    found: list[str] = []
    for field in ("admin_tokens", "read_tokens"):
        value = getattr(settings, field, None)
        raw = value.get_secret_value() if value is not None else ""
        for item in raw.split(","):
            token = item.split(":", 1)[-1].strip()
            if token:
                found.append(token)
    url = getattr(settings, "database_url", "")
    try:
        password = make_url(url).password if url else None
    except Exception:
        password = None
    if password:
        found.append(str(password))
    return found


def configure_from_settings(settings: object) -> None:
    """``configure_logging`` with the level, format and secrets of a process's settings."""
    configure_logging(
        getattr(settings, "log_level", "INFO"), getattr(settings, "log_format", "text"), settings_secrets(settings)
    )
