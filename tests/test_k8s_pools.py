"""Kubernetes with capacity pools, without a cluster: the pool manifests fit the backend, and which nodes count as
being drained, and the drain notices the pooled backend reads over real HTTP from a Kubernetes API mock (kmock):
spot pods on cordoned or drain-tainted nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from controller.backends.base import BackendError, DrainNotice, PooledBackend
from controller.backends.factory import build_backend
from controller.backends.kubernetes import KubernetesTarget
from controller.backends.kubernetes_pools import KubernetesPoolsBackend, node_draining
from tests.kube_support import NAME, NAMESPACE, ApiServer, api_server

__all__ = ["api_server"]  # the fixture, used below

POOLS_DIR = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "pools"
MODELS = {
    "Deployment": "V1Deployment",
    "ClusterRole": "V1ClusterRole",
    "ClusterRoleBinding": "V1ClusterRoleBinding",
}


def documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((POOLS_DIR / "kustomization.yaml").read_text())
    found = {p.name for p in POOLS_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == found
    return [d for name in sorted(found) for d in yaml.safe_load_all((POOLS_DIR / name).read_text()) if d]


def test_one_deployment_per_pool_named_as_the_backend_scales_them() -> None:
    docs = documents()
    for doc in docs:
        obj = client.ApiClient().deserialize(json.dumps(doc), MODELS[doc["kind"]], "application/json")
        assert obj.metadata.name == doc["metadata"]["name"]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"digits-reserved", "digits-spot", "digits-on-demand"}
    for name, d in deployments.items():
        pool = name.removeprefix("digits-")
        assert d["spec"]["selector"]["matchLabels"]["prewarm.dev/pool"] == pool
        assert (
            d["spec"]["template"]["metadata"]["labels"]["prewarm.dev/deployment"] == "digits"
        )  # one Service
    spot = deployments["digits-spot"]["spec"]["template"]["spec"]
    assert spot["nodeSelector"] == {"node.kubernetes.io/lifecycle": "spot"}
    assert {t["key"] for t in spot["tolerations"]} >= {"node.kubernetes.io/lifecycle"}
    assert spot["terminationGracePeriodSeconds"] < 30  # drains inside the shortest notice
    assert "tolerations" not in deployments["digits-on-demand"]["spec"]["template"]["spec"]


def node(unschedulable: bool = False, taints: list[str] = ()) -> client.V1Node:  # type: ignore[assignment]
    return client.V1Node(
        metadata=client.V1ObjectMeta(name="n1"),
        spec=client.V1NodeSpec(
            unschedulable=unschedulable, taints=[client.V1Taint(key=k, effect="NoSchedule") for k in taints]
        ),
    )


@pytest.mark.parametrize(
    ("n", "why"),
    [
        (node(), None),
        (node(unschedulable=True), "cordoned"),
        (node(taints=["ToBeDeletedByClusterAutoscaler"]), "taint ToBeDeletedByClusterAutoscaler"),
        (
            node(taints=["aws-node-termination-handler/spot-itn"]),
            "taint aws-node-termination-handler/spot-itn",
        ),
        (node(taints=["dedicated"]), None),
    ],
)
def test_which_nodes_are_being_drained(n: client.V1Node, why: str | None) -> None:
    assert node_draining(n) == why


def test_the_factory_builds_a_pooled_backend_from_backend_config(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1", "kind": "Config", "current-context": "c",
                "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            }
        )
    )  # fmt: skip
    backend = build_backend(
        name="digits", model="m", backend="kubernetes", min_replicas=1, engine=None, state_root=tmp_path,
        backend_config={"namespace": "prewarm", "kubeconfig": str(kubeconfig), "pools": {"spot": "spot", "on-demand": "on-demand"}},
    )  # fmt: skip
    assert isinstance(backend, KubernetesPoolsBackend) and isinstance(backend, PooledBackend)
    assert {p: b.target.deployment for p, b in backend.pools.items()} == {
        "spot": "digits-spot",
        "on-demand": "digits-on-demand",
    }
    backend.close()
    with pytest.raises(BackendError, match="maps each pool name to its kind"):
        build_backend(
            name="digits", model="m", backend="kubernetes", min_replicas=1, engine=None, state_root=tmp_path,
            backend_config={"kubeconfig": str(kubeconfig), "pools": ["spot"]},
        )  # fmt: skip


def _node(name: str, unschedulable: bool = False, taint: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"unschedulable": unschedulable}
    if taint:
        spec["taints"] = [{"key": taint, "effect": "NoSchedule"}]
    return {"metadata": {"name": name}, "spec": spec}


def _pod(name: str, node_name: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "labels": {"app": "resnet"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T12:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": node_name, "containers": []}, "status": {"phase": "Running"}}


def _pooled(server: ApiServer, pools: dict[str, str]) -> KubernetesPoolsBackend:
    target = KubernetesTarget.from_config(
        {"namespace": NAMESPACE, "kubeconfig": str(server.kubeconfig), "context": "test", "max_attempts": 1},
        default_name="resnet-pool",
    )
    server.cluster.aliases = tuple(f"{target.deployment}-{pool}" for pool in pools)
    return KubernetesPoolsBackend(target, pools)


def test_spot_pods_on_cordoned_or_drain_tainted_nodes_are_drain_notices(api_server: ApiServer) -> None:
    api_server.cluster.nodes = [
        _node("calm"), _node("cordoned", unschedulable=True), _node("reclaimed", taint="ToBeDeletedByClusterAutoscaler"),
    ]  # fmt: skip
    api_server.cluster.pods = [
        _pod("a", "calm"), _pod("b", "cordoned"), _pod("c", "reclaimed"), _pod("gone", "cordoned", deleting=True),
    ]  # fmt: skip
    backend = _pooled(api_server, {"spot": "spot", "on-demand": "on-demand"})
    try:
        notices = backend.drain_notices()
    finally:
        backend.close()
    assert sorted(notices, key=lambda n: n.replica) == [
        DrainNotice("spot", "b", "node cordoned cordoned"),
        DrainNotice("spot", "c", "node reclaimed taint ToBeDeletedByClusterAutoscaler"),
    ]
    assert NAME in {path.split("/")[-1] for _, path, *_ in api_server.cluster.requests if "/deployments/" in path}


def test_no_spot_pool_asks_nothing_and_a_failing_api_gives_no_notice(api_server: ApiServer) -> None:
    backend = _pooled(api_server, {"on-demand": "on-demand"})
    try:
        assert backend.drain_notices() == []
        assert api_server.cluster.requests == []  # no spot pool: no node is listed
    finally:
        backend.close()
    api_server.cluster.nodes = [_node("cordoned", unschedulable=True)]
    api_server.cluster.faults["GET /api/v1/nodes"] = ["403"]
    backend = _pooled(api_server, {"spot": "spot"})
    try:
        assert backend.drain_notices() == []  # logged, and the decision goes on without notices
    finally:
        backend.close()
