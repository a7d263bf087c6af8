"""Replica discovery by DNS: the replicas are the addresses a name resolves to, re-resolved every second.

For orchestrators whose service discovery is DNS: a Docker Swarm service (``tasks.<service>``, or the service name
with ``endpoint_mode: dnsrr``), a Compose service scaled to several containers, a Kubernetes headless Service.
The orchestrator starts and stops the replicas (the Swarm backend scales the service); this module follows them and
publishes them in the registry file the gateway already polls (``replicas.json``), so the gateway itself needs no
change. A new address is published once it answers its readiness probe, so no request goes to a replica still
loading its model; an address that drops out of DNS is published as gone, and the gateway drains it. When the
resolver fails, the last answer is kept (and the gateway's own probes eject replicas that died meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from inference.gateway.health import probe_ready
from inference.gateway.registry import REPLICAS_FILE, RegistrySnapshot, ReplicaRecord, write_registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DnsTarget:
    """``NAME:PORT``: the replicas are every address of NAME, each serving on PORT."""

    name: str
    port: int

    @classmethod
    def parse(cls, text: str) -> DnsTarget:
        name, _, port = text.rpartition(":")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected NAME:PORT (e.g. tasks.replica:9000), got {text!r}")
        return cls(name, int(port))


@dataclass
class DnsDiscovery:
    """Resolves ``target`` every ``interval_s`` and keeps ``registry_dir/replicas.json`` in step with it."""

    target: DnsTarget
    registry_dir: Path
    deployment: str
    interval_s: float = 1.0
    probe_timeout_s: float = 2.0
    published: tuple[str, ...] = field(default=(), init=False)  # addresses in the registry now
    _last_error: str = field(default="", init=False)

    async def resolve(self) -> set[str] | None:
        """The name's addresses now; None when the resolver failed (a name with no address is an empty set)."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.target.name, self.target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            if error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                self._report("")
                return set()  # the name exists in no record: no replica runs
            self._report(f"cannot resolve {self.target.name}: {error}")
            return None
        self._report("")
        return {str(info[4][0]) for info in infos}

    async def refresh(self) -> None:
        """One round: resolve, probe the new addresses, publish the set if it changed."""
        addresses = await self.resolve()
        if addresses is None:
            return
        known = set(self.published) & addresses
        new = sorted(addresses - known)
        results = await asyncio.gather(
            *(probe_ready(address, self.target.port, self.probe_timeout_s) for address in new)
        )
        ready = known | {address for address, (ok, _) in zip(new, results, strict=True) if ok}
        current = tuple(sorted(ready))
        if current != self.published:
            added, gone = set(current) - set(self.published), set(self.published) - set(current)
            log.info(
                "%s: %d replicas (added %s, gone %s)",
                self.target.name, len(current), sorted(added) or "none", sorted(gone) or "none",
            )  # fmt: skip
            self.publish(current)

    def publish(self, addresses: tuple[str, ...]) -> None:
        records = tuple(
            ReplicaRecord(replica_id=f"{address}:{self.target.port}", host=address, port=self.target.port,
                          state="ready")
            for address in addresses
        )  # fmt: skip
        snapshot = RegistrySnapshot(self.deployment, records, written_at=time.time())
        write_registry(self.registry_dir / REPLICAS_FILE, snapshot)
        self.published = addresses

    async def run(self) -> None:
        """Refresh every ``interval_s`` until cancelled."""
        self.publish(())  # start from a clean registry: replicas are what DNS says now, not a file left behind
        while True:
            started = time.monotonic()
            try:
                await self.refresh()
            except OSError as error:  # writing the registry failed: try again next round
                self._report(f"cannot publish {self.registry_dir / REPLICAS_FILE}: {error}")
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    def _report(self, error: str) -> None:
        """Log an error when it starts and when it ends, not every second."""
        if error and error != self._last_error:
            log.warning("%s (keeping the %d replicas known)", error, len(self.published))
        elif not error and self._last_error:
            log.info("%s resolves again", self.target.name)
        self._last_error = error
