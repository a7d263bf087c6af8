"""Kubernetes backend: scale a Deployment through its ``scale`` subresource with the official client.

The Deployment's own controller creates and removes pods; prewarm only writes ``spec.replicas`` of the scale
subresource (optimistically, with the ``resourceVersion`` it read) and reads ready replicas from the status.
Conflicts (409), throttling (429), server errors (5xx) and timeouts are retried with capped exponential backoff;
refusals that a retry cannot fix (401, 403, 404, 422) raise ``BackendError`` at once with a message saying what to do.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from controller.backends.base import BackendError, ReplicaInfo, ReplicaState
from controller.backends.local_events import READY, Event, EventSink

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({409, 429, 500, 502, 503, 504})


class KubernetesApiError(BackendError):
    """The API server refused an operation; ``status`` is the HTTP status (0 when it never answered)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class KubernetesTarget:
    """Which Deployment to scale and how to reach the API server (from a deployment's ``backend_config``)."""

    namespace: str
    deployment: str
    kubeconfig: str | None = None  # path; None: $KUBECONFIG or ~/.kube/config when not in a cluster
    context: str | None = None  # kubeconfig context; None: the current context
    in_cluster: bool | None = None  # None: in-cluster config when running in a pod, else kubeconfig
    request_timeout_s: float = 5.0  # per API call (connect and read)
    max_attempts: int = 4  # per operation, the first try included
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 2.0
    list_pods: bool = True  # replicas() lists the Deployment's pods (needs RBAC list on pods)

    def __post_init__(self) -> None:
        if not self.namespace or not self.deployment:
            raise ValueError("a Kubernetes target needs both 'namespace' and 'deployment'")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.request_timeout_s <= 0 or self.backoff_initial_s < 0 or self.backoff_max_s < 0:
            raise ValueError("timeouts and backoff must not be negative (the timeout must be positive)")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], default_name: str | None = None) -> KubernetesTarget:
        """Build from a deployment's ``backend_config``; ``deployment`` defaults to the prewarm deployment name."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown Kubernetes backend_config keys {unknown}; known keys: {sorted(known)}")
        values = dict(config)
        values.setdefault("namespace", "default")
        if default_name is not None:
            values.setdefault("deployment", default_name)
        return cls(**values)

    @property
    def ref(self) -> str:
        return f"deployment {self.namespace}/{self.deployment}"


def build_api_client(target: KubernetesTarget) -> ApiClient:
    """An API client from in-cluster config (service account token) or from a kubeconfig file and context."""
    from kubernetes import client, config

    in_cluster = target.in_cluster
    if in_cluster is None:
        in_cluster = "KUBERNETES_SERVICE_HOST" in os.environ and target.kubeconfig is None
    configuration = client.Configuration()
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=target.kubeconfig, context=target.context, client_configuration=configuration
            )
    except (config.ConfigException, OSError) as error:
        where = (
            "in-cluster service account" if in_cluster else f"kubeconfig {target.kubeconfig or '(default)'}"
        )
        raise BackendError(f"cannot load Kubernetes credentials from {where}: {error}") from error
    # Retries are ours (with backoff and logging); urllib3 must not retry silently underneath.
    configuration.retries = False
    return client.ApiClient(configuration)


def pod_startup_s(pod: Any) -> tuple[float, float] | None:
    """(creation epoch seconds, seconds from creation to the Ready condition) of a Ready pod, else None."""
    created = pod.metadata.creation_timestamp if pod.metadata else None
    if created is None or pod.metadata.deletion_timestamp is not None:
        return None
    conditions = (pod.status.conditions if pod.status else None) or []
    ready = next((c for c in conditions if c.type == "Ready" and c.status == "True"), None)
    if ready is None or ready.last_transition_time is None:
        return None
    return created.timestamp(), max(0.0, (ready.last_transition_time - created).total_seconds())


def _pod_state(pod: Any) -> ReplicaState:
    """A pod's place in the replica life cycle, from its deletion mark, phase and Ready condition."""
    if pod.metadata.deletion_timestamp is not None:
        return ReplicaState.STOPPING
    phase = pod.status.phase if pod.status else None
    if phase in ("Failed", "Succeeded"):
        return ReplicaState.FAILED
    conditions = (pod.status.conditions if pod.status else None) or []
    if any(c.type == "Ready" and c.status == "True" for c in conditions):
        return ReplicaState.READY
    statuses = (pod.status.container_statuses if pod.status else None) or []
    for status in statuses:
        waiting = status.state.waiting if status.state else None
        if waiting is not None and waiting.reason in ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff"):
            return ReplicaState.FAILED
    return ReplicaState.STARTING


class KubernetesBackend:
    """Scales one Deployment; blocking calls, each bounded by ``request_timeout_s`` x ``max_attempts``."""

    name = "kubernetes"

    def __init__(
        self,
        target: KubernetesTarget,
        api_client: ApiClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
        events: EventSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from kubernetes import client

        self.target = target
        self._api_client = api_client if api_client is not None else build_api_client(target)
        self._apps = client.AppsV1Api(self._api_client)
        self._core = client.CoreV1Api(self._api_client)
        self._sleep = sleep
        self._pods_forbidden = False
        self.events = events
        # Startups are measured for pods created after this backend started watching (a controller that takes a
        # deployment over does not record the previous owner's pods again).
        self._watching_since = clock()
        self._recorded: set[str] = set()  # pod UIDs whose startup was recorded
        self._last_counts: tuple[int, int] | None = None

    # --- the protocol ---------------------------------------------------------------------------------------

    def ready_count(self) -> int:
        """``status.readyReplicas`` of the Deployment (pods that passed their readiness probe). When the counts
        changed since the last call, the pods are listed and each new pod's startup (creation to Ready) is
        recorded as a replica event, so the lead time follows the cluster."""
        deployment = self._call(
            "read",
            lambda timeout: self._apps.read_namespaced_deployment(
                self.target.deployment, self.target.namespace, _request_timeout=timeout
            ),
        )
        status = deployment.status
        ready = int((status.ready_replicas if status else None) or 0)
        counts = (ready, int((status.replicas if status else None) or 0))
        if self.events is not None and counts != self._last_counts:
            self._record_startups(deployment)
        self._last_counts = counts
        return ready

    def desired_count(self) -> int:
        """``spec.replicas`` of the scale subresource: what was last asked for, by anyone."""
        scale = self._read_scale()
        return int(scale.spec.replicas or 0) if scale.spec else 0

    def scale_to(self, replicas: int) -> None:
        """Write ``spec.replicas`` unless it already holds ``replicas``; re-read and retry on a conflict."""
        if replicas < 0:
            raise ValueError(f"cannot scale to {replicas} replicas")

        def attempt(timeout: tuple[float, float]) -> None:
            scale = self._apps.read_namespaced_deployment_scale(
                self.target.deployment, self.target.namespace, _request_timeout=timeout
            )
            current = scale.spec.replicas if scale.spec else None
            if current == replicas:
                logger.debug("%s already at %d replicas", self.target.ref, replicas)
                return
            # The resourceVersion makes the write conditional: if someone else scaled in between, the API
            # answers 409 and the next attempt starts from a fresh read instead of blindly overwriting.
            body: dict[str, Any] = {"spec": {"replicas": replicas}}
            version = scale.metadata.resource_version if scale.metadata else None
            if version:
                body["metadata"] = {"resourceVersion": version}
            self._apps.patch_namespaced_deployment_scale(
                self.target.deployment, self.target.namespace, body, _request_timeout=timeout
            )
            logger.info("%s scaled from %s to %d replicas", self.target.ref, current, replicas)

        self._call("scale", attempt)

    def replicas(self) -> list[ReplicaInfo]:
        """The Deployment's pods (by the scale selector); without RBAC on pods, counts from the status."""
        deployment = self._call(
            "read",
            lambda timeout: self._apps.read_namespaced_deployment(
                self.target.deployment, self.target.namespace, _request_timeout=timeout
            ),
        )
        if self.target.list_pods and not self._pods_forbidden:
            selector = self._selector(deployment)
            try:
                pods = self._call(
                    "list pods of",
                    lambda timeout: self._core.list_namespaced_pod(
                        self.target.namespace, label_selector=selector, _request_timeout=timeout
                    ),
                )
                return [self._pod_info(pod) for pod in pods.items]
            except KubernetesApiError as error:
                if error.status != 403:
                    raise
                # Listing pods is optional: without that grant, stop asking (until restart) and use the counts.
                logger.warning(
                    "%s: pods not listable, replicas() reports counts from the status", self.target.ref
                )
                self._pods_forbidden = True
        return self._replicas_from_status(deployment)

    def close(self) -> None:
        self._api_client.close()

    # --- helpers --------------------------------------------------------------------------------------------

    def _record_startups(self, deployment: Any) -> None:
        """Record ``ready`` events for pods created since we watch that turned Ready: creation to Ready from the
        pods' own timestamps (whenever we look). Best effort: a failure to list pods never fails the caller."""
        if not self.target.list_pods or self._pods_forbidden or self.events is None:
            return
        selector = self._selector(deployment)
        try:
            pods = self._call(
                "list pods of",
                lambda timeout: self._core.list_namespaced_pod(
                    self.target.namespace, label_selector=selector, _request_timeout=timeout
                ),
            )
        except KubernetesApiError as error:
            if error.status == 403:
                logger.warning("%s: pods not listable, replica startup is not measured", self.target.ref)
                self._pods_forbidden = True
            return
        for pod in pods.items:
            measured = pod_startup_s(pod)
            if measured is None or pod.metadata is None:
                continue
            name = str(pod.metadata.name)
            uid = str(pod.metadata.uid or name)
            created, startup = measured
            if uid in self._recorded or created < self._watching_since:
                continue
            self._recorded.add(uid)
            detail = f"pod created {created:.0f}, Ready {startup:.1f} s later"
            self.events.record(Event(name, READY, round(startup, 3), detail))

    def _read_scale(self) -> Any:
        return self._call(
            "read scale of",
            lambda timeout: self._apps.read_namespaced_deployment_scale(
                self.target.deployment, self.target.namespace, _request_timeout=timeout
            ),
        )

    def _selector(self, deployment: Any) -> str:
        labels = (
            deployment.spec.selector.match_labels if deployment.spec and deployment.spec.selector else None
        ) or {}
        return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))

    def _pod_info(self, pod: Any) -> ReplicaInfo:
        ip = pod.status.pod_ip if pod.status else None
        started = pod.status.start_time if pod.status else None
        return ReplicaInfo(
            replica_id=pod.metadata.name,
            state=_pod_state(pod),
            address=ip,
            started_at=started.timestamp() if started is not None else None,
        )

    def _replicas_from_status(self, deployment: Any) -> list[ReplicaInfo]:
        status = deployment.status
        total = int((status.replicas if status else None) or 0)
        ready = min(int((status.ready_replicas if status else None) or 0), total)
        name = self.target.deployment
        return [ReplicaInfo(f"{name}-ready-{i}", ReplicaState.READY) for i in range(ready)] + [
            ReplicaInfo(f"{name}-starting-{i}", ReplicaState.STARTING) for i in range(total - ready)
        ]

    def _call(self, what: str, operation: Callable[[tuple[float, float]], T]) -> T:
        """Run ``operation`` with retries on transient failures; translate the rest into ``BackendError``."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        target = self.target
        timeout = (target.request_timeout_s, target.request_timeout_s)
        delay = target.backoff_initial_s
        for attempt in range(1, target.max_attempts + 1):
            try:
                return operation(timeout)
            except ApiException as error:
                status = int(error.status or 0)
                if status in RETRYABLE_STATUSES and attempt < target.max_attempts:
                    logger.warning(
                        "%s %s: HTTP %d %s (attempt %d/%d), retrying in %.2f s",
                        what, target.ref, status, error.reason, attempt, target.max_attempts, delay,
                    )  # fmt: skip
                else:
                    message = self._explain(what, status, error)
                    logger.error("%s", message)
                    raise KubernetesApiError(message, status) from error
            except Urllib3Error as error:
                if attempt < target.max_attempts:
                    logger.warning(
                        "%s %s: %s (attempt %d/%d), retrying in %.2f s",
                        what, target.ref, type(error).__name__, attempt, target.max_attempts, delay,
                    )  # fmt: skip
                else:
                    message = (
                        f"{what} {target.ref}: the API server did not answer after {target.max_attempts} attempts "
                        f"({type(error).__name__}: {error}); check the API server address and network, or raise "
                        f"request_timeout_s (now {target.request_timeout_s} s)"
                    )
                    logger.error("%s", message)
                    raise KubernetesApiError(message, 0) from error
            self._sleep(delay)
            delay = min(max(delay * 2, target.backoff_initial_s), target.backoff_max_s)
        raise AssertionError("unreachable")  # pragma: no cover

    def _explain(self, what: str, status: int, error: Any) -> str:
        """An error message that says what to change, by HTTP status."""
        target = self.target
        detail = _status_message(error)
        if status == 403:
            verb = "patch" if what == "scale" else "list" if "pods" in what else "get"
            resource = "pods" if "pods" in what else "deployments/scale" if "scale" in what else "deployments"
            return (
                f"{what} {target.ref}: HTTP 403 forbidden ({detail}). Grant the controller's ServiceAccount "
                f"'{verb}' on '{resource}' in namespace '{target.namespace}' (see deploy/k8s/rbac.yaml)"
            )
        if status == 401:
            return f"{what} {target.ref}: HTTP 401 unauthorised ({detail}); the credentials are missing or expired"
        if status == 404:
            return (
                f"{what} {target.ref}: HTTP 404 not found ({detail}); check 'namespace' and 'deployment' in the "
                f"deployment's backend_config"
            )
        if status in RETRYABLE_STATUSES:
            return f"{what} {target.ref}: HTTP {status} ({detail}) still after {target.max_attempts} attempts"
        return f"{what} {target.ref}: HTTP {status} ({detail})"


def _status_message(error: Any) -> str:
    """The ``message`` of the Kubernetes Status in an error body, else the HTTP reason."""
    import json

    try:
        body = json.loads(error.body or "")
        message = body.get("message")
        if message:
            return str(message)
    except (ValueError, AttributeError):
        pass
    return str(error.reason or "no detail")
