"""``prewarm replica``: serve one ONNX model over the Open Inference Protocol (V2)."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``replica`` subcommand (defaults come from PREWARM_REPLICA_* settings)."""
    parser = subparsers.add_parser(
        "replica",
        help="serve one ONNX model (KServe V2 REST), pre-warmed",
        description="Serve <model-repo>/<model>/model.onnx with onnxruntime over the Open Inference Protocol (V2).",
    )
    parser.add_argument("--model-repo", help="folder with one <name>/model.onnx per model (default: setting)")
    parser.add_argument("--model", help="model name = folder name in the repository (default: setting)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--grpc-port",
        type=int,
        help="port of the V2 gRPC service (inference.GRPCInferenceService); 0 disables it (default: setting, 0)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, help="worker processes sharing the port (default: setting)")
    parser.add_argument("--batch-max-size", type=int, help="rows per batch; 1 disables batching")
    parser.add_argument("--batch-max-wait-ms", type=float, help="how long a batch waits to fill")
    parser.add_argument("--max-body-bytes", type=int, help="larger bodies get 413")
    parser.add_argument(
        "--service-time-ms",
        type=float,
        help="demos and tests: every inference also takes this long, waiting without using CPU, to emulate a "
        "heavier model (default: setting, 0)",
    )
    parser.add_argument(
        "--server",
        choices=["fast", "uvicorn"],
        help="HTTP server: the lean built-in one or uvicorn (default: setting)",
    )
    parser.set_defaults(handler=run_replica)


def run_replica(args: argparse.Namespace) -> int:
    import psutil

    from prewarm.settings import get_settings

    settings = get_settings()
    from inference.config import ReplicaConfig
    from inference.httplimits import HttpLimits

    def pick(value: object, default: object) -> object:
        return default if value is None else value

    config = ReplicaConfig(
        model_repo=str(pick(args.model_repo, settings.replica_model_repo)),
        model=str(pick(args.model, settings.replica_model)),
        host=args.host,
        port=args.port,
        workers=int(pick(args.workers, settings.replica_workers)),  # type: ignore[call-overload]
        max_body_bytes=int(pick(args.max_body_bytes, settings.replica_max_body_bytes)),  # type: ignore[call-overload]
        batch_max_size=int(pick(args.batch_max_size, settings.replica_batch_max_size)),  # type: ignore[call-overload]
        batch_max_wait_ms=float(pick(args.batch_max_wait_ms, settings.replica_batch_max_wait_ms)),  # type: ignore[arg-type]
        warmup_rounds=settings.replica_warmup_rounds,
        intra_op_threads=settings.replica_intra_op_threads,
        graceful_timeout_s=settings.replica_graceful_timeout_s,
        server=str(pick(args.server, settings.replica_server)),
        service_time_ms=float(pick(args.service_time_ms, settings.replica_service_time_ms)),  # type: ignore[arg-type]
        process_start_ts=psutil.Process().create_time(),
        grpc_port=int(pick(args.grpc_port, settings.replica_grpc_port)),  # type: ignore[call-overload]
        **asdict(HttpLimits.from_settings(settings)),
    )
    from inference.app import check_model_exists
    from inference.model import ModelNotFoundError

    try:
        check_model_exists(config)
    except ModelNotFoundError as error:
        logger.error("%s", error)
        return 2
    logger.debug("cli ready to serve after %.3f s", time.time() - config.process_start_ts)
    from inference.server import serve

    return serve(config)
