"""The Kubernetes backend over real HTTP against a Kubernetes API mock (kmock) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
import pytest

from controller.backends.base import BackendError, ReplicaBackend, ReplicaState
from controller.backends.kubernetes import KubernetesApiError, KubernetesBackend, KubernetesTarget

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
    resource_version: int = 100
    pods: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, list[str]] = field(default_factory=dict)  # route -> faults to serve, in order
    requests: list[tuple[str, str, Any, str | None]] = field(default_factory=list)  # method, path, body, auth
    release: asyncio.Event | None = None

    def scale(self) -> dict[str, Any]:
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "resourceVersion": str(self.resource_version)},
            "spec": {"replicas": self.replicas},
            "status": {"replicas": self.replicas, "selector": "app=resnet"},
        }

    def deployment(self) -> dict[str, Any]:
        status: dict[str, Any] = {"replicas": self.replicas}
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
        self.requests.append((method, path, request.data, request.headers.get("Authorization")))
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


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_backend(server: ApiServer, sleeps: list[float], **overrides: Any) -> KubernetesBackend:
    config: dict[str, Any] = {
        "namespace": NAMESPACE,
        "kubeconfig": str(server.kubeconfig),
        "context": "test",
        "request_timeout_s": 2.0,
        "max_attempts": 3,
        "backoff_initial_s": 0.1,
        "backoff_max_s": 0.3,
    }
    config.update(overrides)
    target = KubernetesTarget.from_config(config, default_name=NAME)
    return KubernetesBackend(target, sleep=sleeps.append)


def test_backend_satisfies_the_replica_backend_protocol(api_server: ApiServer, sleeps: list[float]) -> None:
    backend = make_backend(api_server, sleeps)
    assert isinstance(backend, ReplicaBackend)
    assert backend.name == "kubernetes"
    backend.close()


def test_scale_to_patches_the_scale_subresource_with_the_read_resource_version(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    backend = make_backend(api_server, sleeps)
    backend.scale_to(5)
    assert api_server.cluster.replicas == 5
    assert api_server.cluster.patches() == [{"metadata": {"resourceVersion": "100"}, "spec": {"replicas": 5}}]
    assert backend.desired_count() == 5


def test_requests_use_the_kubeconfig_context_and_its_token(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    make_backend(api_server, sleeps).ready_count()
    assert api_server.cluster.requests, "the selected context must point at the mock, not the current context"
    assert all(auth == f"Bearer {TOKEN}" for *_, auth in api_server.cluster.requests)


def test_scale_to_the_current_count_sends_no_patch(api_server: ApiServer, sleeps: list[float]) -> None:
    make_backend(api_server, sleeps).scale_to(2)
    assert api_server.cluster.patches() == []


def test_conflict_from_a_concurrent_scale_is_retried_from_a_fresh_read(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    api_server.cluster.faults[f"PATCH {SCALE_PATH}"] = ["concurrent-scale"]
    make_backend(api_server, sleeps).scale_to(6)
    assert api_server.cluster.replicas == 6
    versions = [body["metadata"]["resourceVersion"] for body in api_server.cluster.patches()]
    assert versions == ["100", "101"]  # the retry used the version written by the other client
    assert sleeps == [0.1]


def test_persistent_conflict_raises_backend_error_after_max_attempts(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    api_server.cluster.faults[f"PATCH {SCALE_PATH}"] = ["409", "409", "409", "409"]
    with pytest.raises(BackendError, match="409"):
        make_backend(api_server, sleeps).scale_to(4)
    assert len(api_server.cluster.patches()) == 3
    assert sleeps == [0.1, 0.2]  # exponential backoff between the three attempts
    assert api_server.cluster.replicas == 2


def test_backoff_is_capped(api_server: ApiServer, sleeps: list[float]) -> None:
    api_server.cluster.faults[f"GET {DEPLOYMENT_PATH}"] = ["503"] * 4
    backend = make_backend(api_server, sleeps, max_attempts=5)
    assert backend.ready_count() == 2
    assert sleeps == [0.1, 0.2, 0.3, 0.3]


def test_forbidden_is_not_retried_and_says_which_grant_is_missing(
    api_server: ApiServer, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    api_server.cluster.faults[f"PATCH {SCALE_PATH}"] = ["403"]
    with (
        caplog.at_level(logging.ERROR, logger="controller.backends.kubernetes"),
        pytest.raises(KubernetesApiError) as raised,
    ):
        make_backend(api_server, sleeps).scale_to(3)
    assert raised.value.status == 403
    message = str(raised.value)
    assert "'patch' on 'deployments/scale'" in message
    assert f"namespace '{NAMESPACE}'" in message
    assert len(api_server.cluster.patches()) == 1
    assert sleeps == []
    assert any("403" in record.getMessage() for record in caplog.records)


def test_timeout_is_retried(api_server: ApiServer, sleeps: list[float]) -> None:
    api_server.cluster.faults[f"GET {DEPLOYMENT_PATH}"] = ["slow"]
    backend = make_backend(api_server, sleeps, request_timeout_s=1.0)
    assert backend.ready_count() == 2
    assert sleeps == [0.1]
    assert sum(1 for method, path, *_ in api_server.cluster.requests if path == DEPLOYMENT_PATH) == 2


def test_persistent_timeout_raises_backend_error(api_server: ApiServer, sleeps: list[float]) -> None:
    api_server.cluster.faults[f"GET {SCALE_PATH}"] = ["slow", "slow"]
    backend = make_backend(api_server, sleeps, request_timeout_s=1.0, max_attempts=2)
    with pytest.raises(KubernetesApiError, match="did not answer after 2 attempts") as raised:
        backend.scale_to(7)
    assert raised.value.status == 0
    assert api_server.cluster.replicas == 2


def test_unreachable_api_server_raises_backend_error(tmp_path: Path, sleeps: list[float]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    target = KubernetesTarget(
        NAMESPACE, NAME, kubeconfig=str(kubeconfig), max_attempts=2, request_timeout_s=1
    )
    with pytest.raises(BackendError, match="did not answer"):
        KubernetesBackend(target, sleep=sleeps.append).ready_count()


def test_ready_count_reads_ready_replicas_from_the_deployment_status(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    api_server.cluster.replicas = 4
    api_server.cluster.ready_replicas = 3
    assert make_backend(api_server, sleeps).ready_count() == 3


def test_ready_count_is_zero_when_the_status_has_no_ready_replicas(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    api_server.cluster.ready_replicas = None  # the API omits zero-valued fields
    assert make_backend(api_server, sleeps).ready_count() == 0


def test_missing_deployment_raises_an_actionable_error(api_server: ApiServer, sleeps: list[float]) -> None:
    backend = make_backend(api_server, sleeps, deployment="nonexistent")
    with pytest.raises(KubernetesApiError, match=r"404 .*backend_config"):
        backend.ready_count()
    assert sleeps == []


def pod(name: str, *, ready: bool, phase: str = "Running", deleting: bool = False, waiting: str = "") -> dict:
    metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "labels": {"app": "resnet"}}
    if deleting:
        metadata["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    status: dict[str, Any] = {
        "phase": phase,
        "podIP": "10.0.0.7",
        "startTime": "2025-01-01T00:00:00Z",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if waiting:
        status["containerStatuses"] = [
            {"name": "replica", "image": "x", "imageID": "", "ready": False, "restartCount": 3,
             "state": {"waiting": {"reason": waiting}}}
        ]  # fmt: skip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "status": status}


def test_replicas_lists_the_deployment_pods_with_their_states(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    api_server.cluster.pods = [
        pod("resnet-a", ready=True),
        pod("resnet-b", ready=False),
        pod("resnet-c", ready=True, deleting=True),
        pod("resnet-d", ready=False, waiting="CrashLoopBackOff"),
        pod("resnet-e", ready=False, phase="Failed"),
    ]
    replicas = make_backend(api_server, sleeps).replicas()
    assert [(r.replica_id, r.state) for r in replicas] == [
        ("resnet-a", ReplicaState.READY),
        ("resnet-b", ReplicaState.STARTING),
        ("resnet-c", ReplicaState.STOPPING),
        ("resnet-d", ReplicaState.FAILED),
        ("resnet-e", ReplicaState.FAILED),
    ]
    assert replicas[0].address == "10.0.0.7"
    assert replicas[0].started_at == 1735689600.0


def test_replicas_falls_back_to_status_counts_when_pods_are_forbidden(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    api_server.cluster.replicas = 3
    api_server.cluster.ready_replicas = 1
    api_server.cluster.faults[f"GET {PODS_PATH}"] = ["403"]
    backend = make_backend(api_server, sleeps)
    states = [r.state for r in backend.replicas()]
    assert states == [ReplicaState.READY, ReplicaState.STARTING, ReplicaState.STARTING]
    backend.replicas()  # does not ask for pods again after a 403
    assert sum(1 for _, path, *_ in api_server.cluster.requests if path == PODS_PATH) == 1


def test_missing_kubeconfig_raises_backend_error(tmp_path: Path) -> None:
    target = KubernetesTarget(NAMESPACE, NAME, kubeconfig=str(tmp_path / "absent"), in_cluster=False)
    with pytest.raises(BackendError, match="cannot load Kubernetes credentials"):
        KubernetesBackend(target)


def test_target_from_config_defaults_namespace_and_deployment_name() -> None:
    target = KubernetesTarget.from_config({}, default_name="resnet")
    assert (target.namespace, target.deployment) == ("default", "resnet")


def test_target_from_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown Kubernetes backend_config keys"):
        KubernetesTarget.from_config({"namespace": "a", "deployment": "b", "replicas": 3})


def test_negative_replica_count_is_refused(api_server: ApiServer, sleeps: list[float]) -> None:
    with pytest.raises(ValueError):
        make_backend(api_server, sleeps).scale_to(-1)
    assert api_server.cluster.patches() == []
