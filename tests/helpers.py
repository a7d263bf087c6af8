"""Small helpers shared by tests."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Engine

from prewarm.db.engine import session_factory
from prewarm.db.models import Deployment


def add_deployment(
    engine: Engine, name: str = "digits", min_replicas: int = 1, max_replicas: int = 10
) -> int:
    """Insert a deployment row and return its id."""
    with session_factory(engine)() as session:
        deployment = Deployment(
            name=name,
            model="digits_mlp",
            backend="dry-run",
            backend_config={},
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            price_per_replica_hour=Decimal("0.10"),
        )
        session.add(deployment)
        session.commit()
        return deployment.id
