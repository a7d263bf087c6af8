"""Path and query parameters shared by the routers, bounded so that no value can crash the database."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from controller.api.schemas import DEPLOYMENT_NAME

MAX_ID = 2**31 - 1  # Postgres integer

DeploymentName = Annotated[str, Path(min_length=1, max_length=63, pattern=DEPLOYMENT_NAME)]
PositiveId = Annotated[int, Path(ge=1, le=MAX_ID)]
