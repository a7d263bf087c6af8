"""A Kubernetes API mock (kmock) serving one Deployment with its scale subresource on 127.0.0.1, for the
Kubernetes backend's tests and the controller's HA tests (which point real controller processes at it)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
import pytest

NAMESPACE = "serving"
NAME = "resnet"
TOKEN = "test-token-123"
SCALE_PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{NAME}/scale"
DEPLOYMENT_PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{NAME}"
PODS_PATH = f"/api/v1/namespaces/{NAMESPACE}/pods"


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "code": code,
        "message": message,
    }


@dataclass
class FakeCluster:
    """A Deployment with a scale subresource as the API server keeps it, plus scripted faults per route."""

    replicas: int = 2
    ready_replicas: int | None = 2
    surge: int = 0  # pods beyond the spec during a rolling update (status.replicas = spec + surge)
    resource_version: int = 100
    pods: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, list[str]] = field(default_factory=dict)  # route -> faults to serve, in order
    requests: list[tuple[str, str, Any, str | None]] = field(default_factory=list)  # method, path, body, auth
    times: list[float] = field(default_factory=list)  # when each request arrived (time.time())
    delays: dict[str, float] = field(default_factory=dict)  # Authorization header -> seconds to answer late
    release: asyncio.Event | None = None
    nodes: list[dict[str, Any]] = field(default_factory=list)  # served at /api/v1/nodes
    aliases: tuple[str, ...] = ()  # other Deployment names served as this one (a pool's Deployment, say)

    def scale(self) -> dict[str, Any]:
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "resourceVersion": str(self.resource_version)},
            "spec": {"replicas": self.replicas},
            "status": {"replicas": self.replicas, "selector": "app=resnet"},
        }

    def deployment(self) -> dict[str, Any]:
        status: dict[str, Any] = {"replicas": self.replicas + self.surge}
        if self.ready_replicas is not None:
            status["readyReplicas"] = self.ready_replicas
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "resourceVersion": str(self.resource_version)},
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": {"app": "resnet"}},
                "template": {"metadata": {"labels": {"app": "resnet"}}, "spec": {"containers": []}},
            },
            "status": status,
        }

    def patches(self) -> list[Any]:
        return [body for method, path, body, _ in self.requests if method == "PATCH" and path == SCALE_PATH]

    async def handle(self, request: kmock.Request) -> kmock.Response:
        # Every answer carries its status: kmock keeps the status of the last Response a reaction returned.
        return kmock.Response(**await self._answer(request))

    async def _answer(self, request: kmock.Request) -> dict[str, Any]:
        method = str(request.method.value).upper()
        path = request.url.path
        for alias in self.aliases:
            path = path.replace(f"/deployments/{alias}", f"/deployments/{NAME}")
        self.requests.append((method, path, request.data, request.headers.get("Authorization")))
        self.times.append(time.time())
        delay = self.delays.get(request.headers.get("Authorization") or "")
        if delay:
            await asyncio.sleep(delay)
        route = f"{method} {path}"
        pending = self.faults.get(route) or []
        fault = pending.pop(0) if pending else None
        if fault == "slow":
            assert self.release is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), timeout=5)
        elif fault == "concurrent-scale":  # someone else scales between our read and our write
            self.replicas += 1
            self.resource_version += 1
        elif fault is not None:
            code = int(fault)
            return {"status": code, "payload": status_body(code, "Scripted", f"scripted {code}")}

        if path == SCALE_PATH and method == "GET":
            return {"status": 200, "payload": self.scale()}
        if path == SCALE_PATH and method == "PATCH":
            wanted = (request.data.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != str(self.resource_version):
                message = (
                    'Operation cannot be fulfilled on deployments.apps "resnet": the object has been modified'
                )
                return {"status": 409, "payload": status_body(409, "Conflict", message)}
            self.replicas = int(request.data["spec"]["replicas"])
            self.resource_version += 1
            return {"status": 200, "payload": self.scale()}
        if path == DEPLOYMENT_PATH and method == "GET":
            return {"status": 200, "payload": self.deployment()}
        if path == "/api/v1/nodes" and method == "GET":
            nodes = {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": self.nodes}
            return {"status": 200, "payload": nodes}
        if path == PODS_PATH and method == "GET":
            assert request.params.get("labelSelector") == "app=resnet"
            return {
                "status": 200,
                "payload": {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": self.pods},
            }
        return {"status": 404, "payload": status_body(404, "NotFound", f"{path} not found")}


@dataclass
class ApiServer:
    cluster: FakeCluster
    url: str
    kubeconfig: Path


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    """kmock serving ``FakeCluster`` on 127.0.0.1 from a thread, and a kubeconfig (context 'test') pointing at it."""
    cluster = FakeCluster()
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    box: dict[str, str] = {}

    async def serve() -> None:
        cluster.release = asyncio.Event()
        async with kmock.RawHandler() as handler, kmock.Server(handler) as server:
            handler << cluster.handle
            box["url"] = str(server.url).rstrip("/")
            started.set()
            await stop.wait()
            cluster.release.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "the Kubernetes API mock did not start"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: mock
  cluster: {{server: "{box["url"]}"}}
- name: elsewhere
  cluster: {{server: "http://127.0.0.1:9"}}
users:
- name: prewarm
  user: {{token: {TOKEN}}}
contexts:
- name: test
  context: {{cluster: mock, user: prewarm}}
- name: other
  context: {{cluster: elsewhere, user: prewarm}}
current-context: other
"""
    )
    try:
        yield ApiServer(cluster, box["url"], kubeconfig)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
