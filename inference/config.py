"""The replica's configuration: one frozen value built by the CLI and handed to every worker process."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from inference.httplimits import HttpLimits

CONFIG_ENV = "_PREWARM_REPLICA_CONFIG"  # JSON of ReplicaConfig, set by the CLI for uvicorn's worker processes


@dataclass(frozen=True)
class ReplicaConfig:
    """Everything one replica (all its worker processes) needs; see docs/inference.md for each field."""

    model_repo: str
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_body_bytes: int = 4 * 1024 * 1024
    batch_max_size: int = 1  # rows per batch; 1 = no batching (each request runs alone on the event loop)
    batch_max_wait_ms: float = 0.0  # extra wait for a batch to fill once its first request arrived
    warmup_rounds: int = 20
    intra_op_threads: int = 1
    graceful_timeout_s: float = 30.0
    process_start_ts: float = 0.0  # epoch seconds the replica's first process started (0: this process)
    server: str = "fast"  # "fast" (inference.httpserver) or "uvicorn"
    ready_dir: str | None = None  # with several workers: each worker drops a file here once warmed
    service_time_ms: float = 0.0  # demos/tests: every inference also takes this long (waiting, not computing)
    grpc_port: int = 0  # the Open Inference Protocol's gRPC service; 0: off
    # HTTP limits (inference/httplimits.py): flat here so that the config travels to worker processes as JSON
    max_request_line_bytes: int = 8192
    max_headers: int = 100
    max_header_bytes: int = 65536
    max_pipelined: int = 16
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 60.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def http_limits(self) -> HttpLimits:
        return HttpLimits(
            self.max_request_line_bytes, self.max_headers, self.max_header_bytes, self.max_pipelined,
            self.header_timeout_s, self.body_timeout_s, self.keepalive_timeout_s,
        )  # fmt: skip

    @property
    def batching(self) -> bool:
        return self.batch_max_size > 1

    def warmup_batch_sizes(self) -> list[int]:
        """1 and the powers of two up to the batch bound: the shapes the session will see."""
        sizes, size = [1], 2
        while self.batching and size <= self.batch_max_size:
            sizes.append(size)
            size *= 2
        if self.batching and sizes[-1] != self.batch_max_size:
            sizes.append(self.batch_max_size)
        return sizes

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ReplicaConfig:
        raw = os.environ.get(CONFIG_ENV)
        if not raw:
            raise RuntimeError(f"{CONFIG_ENV} is not set: start replicas with `prewarm replica`")
        return cls(**json.loads(raw))
