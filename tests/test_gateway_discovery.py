"""Replica discovery by DNS (inference/gateway/discovery.py): addresses of a name published once they answer ready.

On Swarm the name is a service's (tests/test_containers_stack.py covers that, tasks coming and going); here the name
is ``localhost`` and the replica a real process on one of its addresses.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from inference.gateway.discovery import DnsDiscovery, DnsTarget
from inference.gateway.registry import REPLICAS_FILE, read_registry
from inference.gateway.server import GatewayConfig
from tests.gateway_support import fake_replica, free_port, running_gateway, wait_for


def test_an_address_is_published_only_once_its_replica_answers_ready(tmp_path: Path) -> None:
    port = free_port()
    discovery = DnsDiscovery(DnsTarget("localhost", port), tmp_path, "digits", probe_timeout_s=0.5)
    asyncio.run(discovery.refresh())  # localhost resolves, but nothing listens there yet
    assert discovery.published == ()
    assert read_registry(tmp_path / REPLICAS_FILE) is None
    with fake_replica(port=port):
        asyncio.run(discovery.refresh())
    assert discovery.published == ("127.0.0.1",)
    snapshot = read_registry(tmp_path / REPLICAS_FILE)
    assert snapshot is not None and snapshot.deployment == "digits"
    [record] = snapshot.replicas
    assert (record.replica_id, record.host, record.port, record.state) == (f"127.0.0.1:{port}", "127.0.0.1", port,
                                                                           "ready")  # fmt: skip


def test_the_gateway_routes_to_what_discovery_publishes(tmp_path: Path) -> None:
    with (
        fake_replica() as (_, port),
        running_gateway(GatewayConfig(registry_dir=tmp_path, port=0)) as gateway,
    ):
        discovery = DnsDiscovery(DnsTarget("localhost", port), tmp_path, "digits")
        asyncio.run(discovery.refresh())
        wait_for(lambda: f"127.0.0.1:{port}" in gateway.balancer.upstreams, 10, what="the gateway to add it")


@pytest.mark.parametrize("text", ["replica", "replica:", ":9000", "replica:x", "replica:70000"])
def test_a_target_is_name_and_port(text: str) -> None:
    with pytest.raises(ValueError, match="NAME:PORT"):
        DnsTarget.parse(text)
    assert DnsTarget.parse("tasks.replica:9000") == DnsTarget("tasks.replica", 9000)
