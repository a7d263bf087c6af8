"""Run a replica: the lean HTTP server (``fast``, default) or uvicorn, one process or several sharing the port."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile

from inference.config import CONFIG_ENV, ReplicaConfig
from inference.metrics import METRICS_DIR_ENV, ROOT_PID_ENV

logger = logging.getLogger(__name__)


def _after_drain(signum: int, frame: object) -> None:
    logger.info("replica drained after signal %d", signum)


def serve(config: ReplicaConfig) -> int:
    """Serve until SIGTERM/SIGINT, then stop accepting, finish in-flight requests and return 0."""
    os.environ[ROOT_PID_ENV] = str(os.getpid())
    scratch: str | None = None
    if config.workers > 1:
        # shared state of the workers: metric snapshots and one readiness file per warmed worker
        scratch = tempfile.mkdtemp(prefix="prewarm-replica-")
        os.makedirs(os.path.join(scratch, "metrics"))
        os.makedirs(os.path.join(scratch, "ready"))
        os.environ[METRICS_DIR_ENV] = os.path.join(scratch, "metrics")
        config = ReplicaConfig(**{**config.__dict__, "ready_dir": os.path.join(scratch, "ready")})
    os.environ[CONFIG_ENV] = config.to_env()
    try:
        if config.server == "fast":
            from inference import httpserver

            logger.info(
                "starting replica model=%s repo=%s on %s:%d workers=%d server=fast batching=%s",
                config.model, config.model_repo, config.host, config.port, config.workers,
                f"max {config.batch_max_size} rows / {config.batch_max_wait_ms} ms" if config.batching else "off",
            )  # fmt: skip
            return httpserver.serve(config)
        return _serve_uvicorn(config)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        logger.info("replica on port %d stopped", config.port)


def _serve_uvicorn(config: ReplicaConfig) -> int:
    import uvicorn

    common = {
        "host": config.host,
        "port": config.port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "log_config": None,  # keep the CLI's logging setup
        "timeout_graceful_shutdown": config.graceful_timeout_s,
        "backlog": 4096,
    }
    logger.info(
        "starting replica model=%s repo=%s on %s:%d workers=%d server=uvicorn batching=%s",
        config.model,
        config.model_repo,
        config.host,
        config.port,
        config.workers,
        f"max {config.batch_max_size} rows / {config.batch_max_wait_ms} ms" if config.batching else "off",
    )
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal with the handler it found; a no-op handler here
    # makes that re-raise harmless so a drained replica exits 0 rather than "killed by SIGTERM".
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _after_drain)
    if config.workers > 1:
        uvicorn.run("inference.app:create_app_from_env", factory=True, workers=config.workers, **common)  # type: ignore[arg-type]
    else:
        from inference.app import ReplicaApp

        uvicorn.Server(uvicorn.Config(ReplicaApp(config), **common)).run()  # type: ignore[arg-type]
    return 0
