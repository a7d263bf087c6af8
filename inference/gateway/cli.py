"""``prewarm gateway``: serve the V2 inference API on one port, forwarding to the deployment's ready replicas."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("gateway", help="Balance requests over a deployment's ready replicas.")
    parser.add_argument("--deployment", default="default", help="Deployment name (metrics and registry).")
    parser.add_argument("--host", default=None, help="Listen address (PREWARM_GATEWAY_HOST).")
    parser.add_argument("--port", type=int, default=None, help="Listen port (PREWARM_GATEWAY_PORT).")
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="Port of the V2 gRPC service, balanced per request; 0 disables it (PREWARM_GATEWAY_GRPC_PORT).",
    )
    parser.add_argument(
        "--registry-dir",
        default=None,
        help="Directory with the backend's replicas.json (default: PREWARM_REPLICA_STATE_DIR/<deployment>).",
    )
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="A fixed replica not managed by a backend (repeatable); disables the registry unless given too.",
    )
    parser.add_argument(
        "--discover",
        default=None,
        metavar="NAME:PORT",
        help="Follow the replicas by DNS instead of a backend's registry: every address of NAME (e.g. Swarm's "
        "tasks.SERVICE), re-resolved every second (inference/gateway/discovery.py).",
    )
    parser.add_argument(
        "--proxy",
        choices=["python", "nginx"],
        default=None,
        help="What carries the requests: the Python gateway itself or nginx driven by it (PREWARM_GATEWAY_PROXY).",
    )
    parser.add_argument("--no-store", action="store_true", help="Do not write metric samples to the store.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from inference.gateway.activator import ActivatorConfig
    from inference.gateway.collector import BatchWriter, store_writer
    from inference.gateway.server import Gateway, GatewayConfig
    from inference.httplimits import HttpLimits
    from prewarm.settings import get_settings

    settings = get_settings()
    registry_dir: Path | None
    if args.registry_dir is not None:
        registry_dir = Path(args.registry_dir)
    elif args.upstream and not args.discover:
        registry_dir = None
    else:
        registry_dir = Path(settings.replica_state_dir) / args.deployment
    proxy = args.proxy or settings.gateway_proxy
    host = args.host or settings.gateway_host
    port = args.port if args.port is not None else settings.gateway_port
    grpc_port = args.grpc_port if args.grpc_port is not None else settings.gateway_grpc_port
    config = GatewayConfig(
        deployment=args.deployment,
        host="127.0.0.1" if proxy == "nginx" else host,
        port=0
        if proxy == "nginx"
        else port,  # behind nginx: an internal control port for /metrics and health
        registry_dir=registry_dir,
        static_upstreams=tuple(args.upstream),
        max_in_flight_per_replica=settings.gateway_max_in_flight_per_replica,
        queue_capacity=settings.gateway_queue_capacity,
        queue_timeout_s=settings.gateway_queue_timeout_s,
        metrics_flush_interval_s=settings.metrics_flush_interval_s,
        max_body_bytes=settings.replica_max_body_bytes,
        http_limits=HttpLimits.from_settings(settings),
        grpc_port=grpc_port or None,
        grpc_host=host,  # gRPC is served by the gateway itself, also in front of nginx (docs/gateway.md)
        activator=ActivatorConfig(
            max_held=settings.activator_max_held,
            max_wait_s=settings.activator_max_wait_s,
            controller_url=settings.activator_controller_url,
            token=settings.activator_token.get_secret_value(),
        )
        if settings.activator_enabled and registry_dir is not None
        else None,
    )
    writer = None if args.no_store else BatchWriter(store_writer(settings.database_url))
    discovery = None
    if args.discover:
        from inference.gateway.discovery import DnsDiscovery, DnsTarget

        assert registry_dir is not None
        try:
            target = DnsTarget.parse(args.discover)
        except ValueError as error:
            log.error("--discover: %s", error)
            return 2
        discovery = DnsDiscovery(target, registry_dir, args.deployment)

    async def main() -> None:
        background = [asyncio.create_task(discovery.run())] if discovery is not None else []
        gateway = Gateway(config, writer)
        await gateway.start()
        frontend = None
        if proxy == "nginx":
            import tempfile

            from inference.gateway.nginx import NginxConfig, NginxFrontend, free_port

            if registry_dir is not None:
                workdir = registry_dir / "nginx"
            else:
                workdir = Path(tempfile.mkdtemp(prefix=f"prewarm-nginx-{args.deployment}-"))
            nginx_config = NginxConfig(
                host=host, port=port, workdir=workdir, workers=settings.gateway_nginx_workers,
                max_body_bytes=config.max_body_bytes, limits=config.http_limits,
            )  # fmt: skip
            frontend = NginxFrontend(gateway, nginx_config, free_port())
            await frontend.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("gateway stopping")
        if frontend is not None:
            await frontend.stop()
        await gateway.stop()
        for task in background:
            task.cancel()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return 0
