"""What the API needs from the running controller (the reconcile loop and its forecast scheduler).

The lead's runtime implements this; without one, the API answers status from the store (the latest decision)
and runs a forecast refresh itself in a worker thread.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, TypedDict, runtime_checkable


class LiveStatus(TypedDict, total=False):
    """Live replica counts of one deployment as the loop knows them (every key optional)."""

    current_replicas: int  # replicas asked of the backend now
    desired_replicas: int  # what the last decision wanted
    ready_replicas: int  # replicas that passed readiness and take traffic
    backend: str
    last_tick_at: float  # epoch seconds of the loop's last pass over this deployment


@runtime_checkable
class ControllerRuntime(Protocol):
    """The live controller as seen by the API."""

    def status(self, deployment_name: str) -> LiveStatus | dict[str, Any] | None:
        """Live counts for a deployment, or None when the loop does not manage it (yet)."""
        ...

    def refresh_forecast(self, deployment_name: str) -> Awaitable[Any]:
        """Run a forecast for the deployment now (off the event loop) and store it; awaited by the API."""
        ...
