"""Running one deployment's forecast now, when no controller runtime is there to do it (blocking; call in a thread).

Uses the scheduled forecast job (``controller/forecast_job.py``) with ``force=True``, so a refresh runs even when the
newest forecast is younger than the policy's refit interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from prewarm.settings import Settings

logger = logging.getLogger(__name__)


class ForecasterUnavailable(RuntimeError):
    """This process cannot run a forecast (the forecaster cannot be imported); the message says why."""


def direct_forecast_job(engine: Engine, settings: Settings) -> Callable[[str], Any]:
    """A blocking ``job(deployment_name)`` that fits and stores one forecast; raises ForecasterUnavailable."""
    try:
        from controller.forecast_job import ForecastJob
    except ImportError as error:
        raise ForecasterUnavailable(f"the forecaster job cannot be imported: {error}") from error
    return ForecastJob(engine, settings).refresh
