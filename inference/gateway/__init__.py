"""The gateway in front of local replicas: balancing, health ejection, retries, a bounded queue, metrics."""

from inference.gateway.server import Gateway, GatewayConfig

__all__ = ["Gateway", "GatewayConfig"]
