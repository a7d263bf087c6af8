"""The web dashboard served by the controller: per deployment, request rate with the forecast band, replicas,
the policy, overrides and the latest decisions with their reasons."""

from controller.dashboard.router import dashboard_router

__all__ = ["dashboard_router"]
