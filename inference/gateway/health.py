"""Active readiness probes of replicas (GET /v2/health/ready on a fresh connection, with a deadline)."""

from __future__ import annotations

import asyncio
import contextlib


async def probe_ready(host: str, port: int, timeout_s: float) -> tuple[bool, str]:
    """(True, "") if the replica answers 200 in time; otherwise (False, why)."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /v2/health/ready HTTP/1.1\r\nhost: replica\r\nconnection: close\r\n\r\n")
            status_line = await reader.readline()
    except TimeoutError:
        return False, f"readiness probe timed out after {timeout_s:g} s"
    except OSError as error:
        return False, f"readiness probe failed: {error}"
    finally:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.transport.abort()
    parts = status_line.split()
    if len(parts) >= 2 and parts[1] == b"200":
        return True, ""
    return False, f"readiness probe answered {status_line.strip().decode(errors='replace') or 'nothing'}"
