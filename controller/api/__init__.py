"""The REST control API (FastAPI, under /api/v1)."""

from controller.api.app import create_app
from controller.api.runtime import ControllerRuntime

__all__ = ["ControllerRuntime", "create_app"]
