"""``prewarm status``: a one-screen summary of the system read from the store."""

from __future__ import annotations

import argparse
from typing import Any

from prewarm.settings import get_settings


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="print deployments and their state"
    )
    parser.set_defaults(handler=_status)


def _status(_args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from prewarm.db import migrate
    from prewarm.db.engine import create_engine_for_url, session_factory
    from prewarm.db.models import Deployment, MetricSample, ScalingDecision

    url = get_settings().database_url
    revision = migrate.current_revision(url)
    print(f"database: {_redact(url)} (schema {revision or 'not migrated: run prewarm db upgrade'})")
    if revision is None:
        return 1
    engine = create_engine_for_url(url)
    with session_factory(engine)() as session:
        deployments = session.scalars(select(Deployment).order_by(Deployment.name)).all()
        if not deployments:
            print("no deployments yet (create one through the control API)")
        for deployment in deployments:
            samples = session.scalar(
                select(func.count())
                .select_from(MetricSample)
                .where(MetricSample.deployment_id == deployment.id)
            )
            last = session.scalars(
                select(ScalingDecision)
                .where(ScalingDecision.deployment_id == deployment.id)
                .order_by(ScalingDecision.ts.desc())
                .limit(1)
            ).first()
            decided = (
                f"last decision {last.current}->{last.desired} at {last.ts:%H:%M:%S}"
                if last
                else "no decisions"
            )
            print(
                f"- {deployment.name}: model {deployment.model}, backend {deployment.backend}, "
                f"replicas {deployment.min_replicas}..{deployment.max_replicas}, {samples} samples, {decided}"
            )
    engine.dispose()
    return 0


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
