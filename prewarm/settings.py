"""All configuration, read from environment variables (prefix ``PREWARM_``) in one place."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings; every field maps to ``PREWARM_<NAME>`` (see the README's configuration table)."""

    model_config = SettingsConfigDict(env_prefix="PREWARM_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///prewarm.db",
        description="SQLAlchemy URL of the store; an SQLite file by default, postgresql+psycopg://... for Postgres.",
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")
    log_format: str = Field(
        default="text",
        pattern="^(text|json)$",
        description="'text' (one readable line per record) or 'json' (one JSON object per line, with the "
        "deployment and decision source as fields).",
    )
    # --- Control plane: sharded leases, reconcile workers, liveness (docs/production.md) ---
    controller_identity: str = Field(
        default="", description="This controller's name in the lease table; empty: host:pid:random."
    )
    lease_buckets: int = Field(
        default=16,
        ge=1,
        le=4096,
        description="Deployments are hashed into this many buckets, one lease each; every controller on one "
        "store must use the same value.",
    )
    lease_duration_s: float = Field(
        default=3.0, gt=0, description="A renewal keeps a bucket's lease this long (failover takes about this)."
    )
    lease_renew_deadline_s: float = Field(
        default=2.0,
        gt=0,
        description="A controller stops acting on a bucket this long after its last successful renewal began "
        "(must be below the lease duration).",
    )
    lease_retry_s: float = Field(
        default=0.5, gt=0, description="How often leases are renewed, rebalanced and free buckets taken."
    )
    reconcile_workers: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Threads running reconciles; one stuck in a hanging backend for over a second is replaced, so "
        "it never holds up the loop or the other deployments.",
    )
    reconcile_max_threads: int = Field(
        default=256,
        ge=1,
        le=4096,
        description="Most reconcile threads in all, stuck ones included (many independent clusters failing).",
    )
    observation_late_s: float = Field(
        default=15.0,
        ge=0,
        description="Samples arriving up to this late are still seen by the loop's in-memory windows.",
    )
    keda_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the KEDA external scaler gRPC service (externalscaler.ExternalScaler); 0: off.",
    )
    liveness_stale_s: float = Field(
        default=15.0,
        gt=0,
        description="/livez fails when no reconcile pass completed for this long (3 default decision intervals).",
    )
    # --- Retention and rollup (done by the controller in small batches) ---
    retention_samples_s: float = Field(
        default=2 * 86400.0, gt=0, description="Per-second samples are kept this long (after their minute rollup)."
    )
    retention_rollups_s: float = Field(
        default=35 * 86400.0,
        gt=0,
        description="Per-minute rollups (mean and max per metric; the forecaster's history) are kept this long.",
    )
    retention_forecasts_s: float = Field(
        default=7 * 86400.0, gt=0, description="Forecast runs older than this are deleted (the newest is kept)."
    )
    retention_decisions_s: float = Field(
        default=30 * 86400.0, gt=0, description="Decisions and replica events older than this are deleted."
    )
    maintenance_interval_s: float = Field(
        default=60.0, gt=0, description="Each deployment's rollup and retention run this often."
    )
    maintenance_batch_rows: int = Field(
        default=5000, ge=100, description="Rows deleted per statement by retention (short locks)."
    )
    max_future_skew_s: float = Field(
        default=300.0, gt=0, description="Samples stamped further than this in the future are rejected."
    )
    # --- Scheduled forecasts (controller/forecast_job.py, forecaster/pipeline.py, docs/forecaster.md) ---
    forecast_candidates: str = Field(
        default="naive,ma,snaive_day,snaive_week,holt_winters,profile",
        description="Comma-separated models the 'auto' forecaster selects from by backtest (prophet is slow).",
    )
    forecast_reselect_interval_s: float = Field(
        default=86400.0,
        gt=0,
        description="Re-run the model-selection backtest of a deployment this often (the live job and the simulator).",
    )
    forecast_selection_eval_s: float = Field(
        default=86400.0,
        gt=0,
        description="Recent history (seconds) the selection backtest scores models on; band residuals are kept as long.",
    )
    forecast_quantile_low: float = Field(default=0.1, gt=0, lt=0.5, description="Lower band quantile.")
    forecast_quantile_high: float = Field(default=0.9, gt=0.5, lt=1, description="Upper band quantile.")
    forecasts_enabled: bool = Field(
        default=True,
        description="Run the scheduled forecasts in the controller (off: e.g. a benchmark of the loop alone).",
    )
    forecast_poll_interval_s: float = Field(
        default=30.0, gt=0, description="The forecast worker checks which deployments are due this often."
    )
    # --- Prometheus as an observation source (controller/sources/prometheus.py) ---
    prometheus_url: str = Field(
        default="",
        description="Prometheus base URL (http://host:9090) to read observations from; empty: unused.",
    )
    prometheus_selector: str = Field(
        default='deployment="$deployment"',
        description="PromQL label matchers picking one deployment's replicas; $deployment is its name.",
    )
    prometheus_rate_window: str = Field(
        default="30s", description="Range of rate() and histogram_quantile() in the PromQL ($window)."
    )
    prometheus_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one Prometheus query.")
    prometheus_queries: dict[str, str] = Field(
        default_factory=dict,
        description='JSON {metric: PromQL template} replacing default queries; "" switches a metric off.',
    )
    # --- inference replica (`prewarm replica`; CLI flags override) ---
    replica_model_repo: str = Field(
        default="models/onnx", description="Replica model repository: one <name>/model.onnx folder per model."
    )
    replica_model: str = Field(
        default="digits_mlp", description="Model a replica serves when --model is not given."
    )
    replica_workers: int = Field(
        default=1, ge=1, description="Worker processes per replica sharing its port."
    )
    replica_max_body_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="Infer bodies larger than this get HTTP 413."
    )
    replica_batch_max_size: int = Field(
        default=1,
        ge=1,
        description="Adaptive batching bound in rows per onnxruntime run; 1 disables batching.",
    )
    replica_batch_max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="With batching on: how long a batch waits for more requests to fill it.",
    )
    replica_warmup_rounds: int = Field(
        default=20, ge=0, description="Warm-up inferences per batch size before a replica reports ready."
    )
    replica_intra_op_threads: int = Field(
        default=1, ge=1, description="onnxruntime intra-op threads per worker process."
    )
    replica_graceful_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="On SIGTERM, how long in-flight requests may take before the replica exits.",
    )
    replica_server: str = Field(
        default="fast",
        pattern="^(fast|uvicorn)$",
        description="Replica HTTP server: 'fast' (built-in httptools/uvloop server) or 'uvicorn'.",
    )
    replica_grpc_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the replica's Open Inference Protocol gRPC service (--grpc-port); 0 disables it.",
    )
    # --- HTTP servers of the replica and the Python gateway (inference/httplimits.py, docs/inference.md) ---
    http_max_request_line_bytes: int = Field(
        default=8192, ge=64, description="Request targets (URLs) longer than this get HTTP 414."
    )
    http_max_headers: int = Field(
        default=100, ge=1, description="Requests with more header fields than this get HTTP 431."
    )
    http_max_header_bytes: int = Field(
        default=65536, ge=256, description="Requests whose header fields total more bytes than this get HTTP 431."
    )
    http_max_pipelined: int = Field(
        default=16,
        ge=1,
        description="Pipelined requests waiting on one connection before the server stops reading from it.",
    )
    http_header_timeout_s: float = Field(
        default=10.0, gt=0, description="A request's head must arrive within this long of its first byte (else 408, closed)."
    )
    http_body_timeout_s: float = Field(
        default=30.0, gt=0, description="A request's body must arrive within this long after its head (else 408)."
    )
    http_keepalive_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Connections with no request under way (new ones too) are closed, without a response, after this long.",
    )
    # Local replicas and gateway (docs/gateway.md)
    replica_service_time_ms: float = Field(
        default=0.0,
        ge=0,
        le=60_000,
        description="Demos and tests: extra wall time per inference (no CPU) emulating a heavier model; 0 normally.",
    )
    replica_state_dir: str = Field(
        default="var/replicas",
        description="Directory where the local backend publishes <deployment>/replicas.json for the gateway.",
    )
    gateway_host: str = Field(default="127.0.0.1", description="Address the gateway listens on.")
    gateway_port: int = Field(default=8000, description="Port the gateway serves the V2 inference API on.")
    gateway_proxy: str = Field(
        default="nginx",
        pattern="^(python|nginx)$",
        description="What carries requests: 'nginx' driven by the gateway (faster) or the Python gateway itself.",
    )
    gateway_nginx_workers: int = Field(
        default=1, gt=0, description="nginx worker processes when gateway_proxy=nginx."
    )
    gateway_max_in_flight_per_replica: int = Field(
        default=64, gt=0, description="Requests one replica holds at once; beyond that requests queue."
    )
    gateway_queue_capacity: int = Field(
        default=1024, ge=0, description="Requests that may wait for a replica; more get 503 + Retry-After."
    )
    gateway_queue_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest a request waits in the gateway queue before a 503."
    )
    gateway_grpc_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port the gateway serves the V2 gRPC service on, balanced per request; 0 disables it.",
    )
    # --- Scale to zero: the gateway's activator (inference/gateway/activator.py, docs/zero.md) ---
    activator_enabled: bool = Field(
        default=True,
        description="With no replica ready, the gateway holds requests (bounded) and asks the controller to "
        "activate the deployment, instead of answering 503 at once.",
    )
    activator_max_held: int = Field(
        default=1000, ge=0, description="Requests the activator holds at once; more get 503 + Retry-After."
    )
    activator_max_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest a held request waits for a replica before a 503 + Retry-After (above the startup).",
    )
    activator_controller_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Control API the activator pushes to (POST /api/v1/deployments/NAME/activate); empty: no push.",
    )
    activator_token: SecretStr = Field(
        default=SecretStr(""),
        description="Admin bearer token the activator sends with its push (one of PREWARM_ADMIN_TOKENS).",
    )
    metrics_flush_interval_s: float = Field(
        default=5.0, gt=0, description="The gateway writes its per-second samples to the store this often."
    )
    # --- REST control API auth and limits (controller/api, docs/api.md) ---
    admin_tokens: SecretStr = Field(
        default=SecretStr(""),
        description="Comma-separated bearer tokens allowed to change state; 'name:token' names the author. "
        "With none configured (here or in the file), every change is refused with 401.",
    )
    admin_tokens_file: str = Field(
        default="",
        description="File with more admin tokens, one per line ('name:token' or token; # comments).",
    )
    read_tokens: SecretStr = Field(
        default=SecretStr(""),
        description="Comma-separated bearer tokens that may read but not change (403 on changes).",
    )
    protect_reads: bool = Field(
        default=False,
        description="Require a read or admin token for GET endpoints too (default: reads are open).",
    )
    api_max_body_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="Request bodies larger than this get HTTP 413."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process (read once from the environment)."""
    return Settings()
