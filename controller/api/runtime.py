"""What the API needs from the running controller (the reconcile loop and its forecast scheduler).

The controller's runtime implements this; without one (``--no-loop``), the API answers status from the store and
runs a forecast refresh itself in a worker thread.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ControllerRuntime(Protocol):
    """The live controller as seen by the API."""

    def status(self, deployment_name: str) -> dict[str, Any] | None:
        """Live view of a deployment this controller owns (current_replicas, ready_replicas, desired_replicas,
        source, reasons, forecast_upper_rps, owner, decided_at, error, errors_total), or None."""
        ...

    def refresh_forecast(self, deployment_name: str) -> Awaitable[Any]:
        """Run a forecast for the deployment now (off the event loop) and store it; awaited by the API."""
        ...

    def activate(self, deployment_name: str, held_requests: int) -> bool:
        """The gateway holds requests for the deployment: reconcile it now (False: not owned here)."""
        ...
