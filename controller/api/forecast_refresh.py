"""Running one deployment's forecast now, when no controller runtime is there to do it (blocking; call in a thread).

Uses the forecaster's scheduled job (``forecaster/job.py``) with ``force=True``, so a refresh runs even when the
newest forecast is younger than the policy's refit interval.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from prewarm.settings import Settings

logger = logging.getLogger(__name__)


class ForecasterUnavailable(RuntimeError):
    """This process cannot run a forecast (the forecaster job is missing or too old); the message says why."""


def direct_forecast_job(engine: Engine, settings: Settings) -> Callable[[str], Any]:
    """A blocking ``job(deployment_name)`` that fits and stores one forecast; raises ForecasterUnavailable."""
    try:
        from forecaster.job import ForecastJob
    except ImportError as error:
        raise ForecasterUnavailable(f"the forecaster job cannot be imported: {error}") from error
    job = ForecastJob(engine, settings)
    run_deployment: Any = job.run_deployment
    if "force" not in inspect.signature(run_deployment).parameters:
        raise ForecasterUnavailable(
            "the forecaster job cannot force a refresh (run_deployment has no force=)"
        )

    def run(deployment_name: str) -> Any:
        from controller import repository
        from prewarm.db.engine import session_factory

        with session_factory(engine)() as session:
            deployment_id = repository.get_deployment(session, deployment_name).id
        return run_deployment(deployment_id, deployment_name, datetime.now(UTC), force=True)

    return run
