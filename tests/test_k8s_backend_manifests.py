"""The example manifests in deploy/k8s/ are valid objects that fit together and fit what the backend does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from prewarm.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
MODELS = {
    "Namespace": "V1Namespace",
    "Deployment": "V1Deployment",
    "Service": "V1Service",
    "ServiceAccount": "V1ServiceAccount",
    "Role": "V1Role",
    "RoleBinding": "V1RoleBinding",
    "Secret": "V1Secret",
    "PodDisruptionBudget": "V1PodDisruptionBudget",
}


def load_all() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        documents.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return documents


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in load_all() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}"
    return matches[0]


@pytest.mark.parametrize("document", load_all(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_a_valid_kubernetes_object(document: dict[str, Any]) -> None:
    model = MODELS[document["kind"]]
    obj = client.ApiClient().deserialize(json.dumps(document), model, "application/json")
    assert obj.metadata.name == document["metadata"]["name"]
    assert document["metadata"].get("namespace", "prewarm") == "prewarm"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    files = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_role_grants_what_the_kubernetes_backend_calls() -> None:
    rules = find("Role", "prewarm-scaler")["rules"]
    granted = {(group, resource, verb) for r in rules for group in r["apiGroups"] for resource in r["resources"]
               for verb in r["verbs"]}  # fmt: skip
    needed = {
        ("apps", "deployments", "get"),  # ready_count(), replicas()
        ("apps", "deployments/scale", "get"),  # scale_to() reads before it writes
        ("apps", "deployments/scale", "patch"),  # scale_to()
        ("", "pods", "list"),  # replicas()
    }
    assert granted == needed  # and nothing more


def test_controller_runs_as_the_bound_service_account() -> None:
    pod = find("Deployment", "prewarm-controller")["spec"]["template"]["spec"]
    binding = find("RoleBinding", "prewarm-controller-scaler")
    assert binding["roleRef"]["name"] == "prewarm-scaler"
    assert {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": "prewarm"} in binding[
        "subjects"
    ]
    find("ServiceAccount", pod["serviceAccountName"])


def test_replica_deployment_selects_its_own_pods_and_the_service_reaches_them() -> None:
    deployment = find("Deployment", "digits")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = find("Service", "digits")
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_replica_readiness_is_the_warmed_up_health_endpoint() -> None:
    [container] = find("Deployment", "digits")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_container_arguments_are_accepted_by_the_prewarm_cli() -> None:
    parser = build_parser()
    [replica] = find("Deployment", "digits")["spec"]["template"]["spec"]["containers"]
    assert parser.parse_args(replica["args"]).command == "replica"
    [controller] = find("Deployment", "prewarm-controller")["spec"]["template"]["spec"]["containers"]
    assert parser.parse_args(controller["args"]).command == "controller"


def test_two_controllers_roll_one_at_a_time_with_probes_that_mean_something() -> None:
    deployment = find("Deployment", "prewarm-controller")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    [controller] = deployment["spec"]["template"]["spec"]["containers"]
    assert controller["livenessProbe"]["httpGet"]["path"] == "/livez"  # fails when the loop is stuck
    assert controller["readinessProbe"]["httpGet"]["path"] == "/readyz"  # fails when the store is unreachable
    identity = next(e for e in controller["env"] if e["name"] == "PREWARM_CONTROLLER_IDENTITY")
    assert identity["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert find("PodDisruptionBudget", "prewarm-controller")["spec"]["minAvailable"] == 1


KEDA = DEPLOY / "keda"


@pytest.mark.parametrize("path", sorted(KEDA.glob("*.yaml")), ids=lambda p: p.name)
def test_keda_scaled_objects_call_the_controllers_scaler_with_valid_metadata(path: Path) -> None:
    from controller.keda.scaler import MODES

    [scaled] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["kind"] == "ScaledObject"
    [external] = [t for t in scaled["spec"]["triggers"] if t["type"] == "external"]
    host, port = external["metadata"]["scalerAddress"].rsplit(":", 1)
    service = find("Service", "prewarm-controller")
    assert host.startswith(f"{service['metadata']['name']}.{service['metadata']['namespace']}")
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    [controller] = find("Deployment", "prewarm-controller")["spec"]["template"]["spec"]["containers"]
    keda_env = next(e for e in controller["env"] if e["name"] == "PREWARM_KEDA_PORT")
    assert int(keda_env["value"]) == int(port)
    assert external["metadata"]["mode"] in MODES and external["metadata"]["deployment"]
    assert scaled["spec"]["fallback"]["replicas"] >= 1  # KEDA holds a count when no controller decides
