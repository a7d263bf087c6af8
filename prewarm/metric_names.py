"""Names of the metrics prewarm stores, shared by every writer and reader of the metrics store.

Per deployment, one sample per second unless said otherwise.
"""

from typing import Final

REQUESTS_RPS: Final = "rps"  # requests that arrived in the second (requests/s)
ERRORS_RPS: Final = "errors_rps"  # requests that ended with an error in the second
SERVED_RPS: Final = "served_rps"  # requests answered in the second (errors included): throughput
LATENCY_P50_MS: Final = "latency_p50_ms"
LATENCY_P95_MS: Final = "latency_p95_ms"
LATENCY_P99_MS: Final = "latency_p99_ms"
QUEUE_LENGTH: Final = "queue_length"  # requests waiting for a replica at the gateway
IN_FLIGHT: Final = "in_flight"  # requests being served by replicas
CPU_PERCENT: Final = "cpu_percent"  # mean over ready replicas, 100 = one core fully busy
MEMORY_PERCENT: Final = "memory_percent"  # mean over ready replicas, of the replica's memory limit
MEMORY_BYTES: Final = "memory_bytes"  # mean resident memory over ready replicas
READY_REPLICAS: Final = "ready_replicas"

ALL: Final = frozenset(
    {
        REQUESTS_RPS,
        ERRORS_RPS,
        SERVED_RPS,
        LATENCY_P50_MS,
        LATENCY_P95_MS,
        LATENCY_P99_MS,
        QUEUE_LENGTH,
        IN_FLIGHT,
        CPU_PERCENT,
        MEMORY_PERCENT,
        MEMORY_BYTES,
        READY_REPLICAS,
    }
)
