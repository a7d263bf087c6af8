"""The scaling policy: every knob of ``decide()``, with defaults and validation messages a user can act on.

A policy is a plain value (stored as JSON in the ``policies`` table, edited through the REST API, read from a
``--policy-file`` by the simulator). Percentages are 0-100; utilisations are fractions 0-1; times are seconds.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.pools import CapacityPool, check_pools


class ScalingPolicy(BaseModel):
    """How one deployment scales. Unknown fields are rejected so that a typo never silently does nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Bounds
    min_replicas: int = Field(default=1, ge=0, description="Never fewer replicas than this.")
    max_replicas: int = Field(default=10, ge=1, description="Never more replicas than this.")

    # Scale to zero (min_replicas 0; controller/zero.py, docs/zero.md)
    scale_to_zero_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="With min_replicas 0: go to zero after this many seconds without a request (Knative's 30 s), "
        "unless the forecast says traffic is coming or the activator holds requests.",
    )
    scale_to_zero_forecast_rps: float = Field(
        default=0.5,
        gt=0,
        description="With min_replicas 0: the forecast says traffic is coming when its upper band reaches this rate "
        "(rps) in an interval. Never to zero while it does within the lead time and horizon; at zero, wake one "
        "lead time before it does. 0.5: with the default 'max' statistic a bin's value is its busiest second, 1 "
        "as soon as one request arrives, so 0.5 at the upper band means a request is at least as likely as not.",
    )

    # Predictive path
    replica_capacity_rps: float = Field(
        default=400.0,
        gt=0,
        description="Requests per second one replica serves at the latency SLO (100 % of its capacity); with "
        "capacity_mode 'learned', the starting value. \"learned\" here is short for capacity_mode 'learned'.",
    )
    target_utilisation: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="Fraction of a replica's capacity to plan for; the rest is headroom for bursts.",
    )
    lead_time_margin_s: float = Field(
        default=10.0, ge=0, description="Added to the measured replica startup time to get the lead time."
    )
    default_replica_startup_s: float = Field(
        default=30.0,
        gt=0,
        description="Replica startup time assumed until one has been measured (from replica events).",
    )
    horizon_s: float = Field(
        default=60.0,
        ge=0,
        description="Seconds after the lead time the forecast must be covered for: the window is "
        "[now, now + lead time + horizon].",
    )
    forecast_max_age_s: float = Field(
        default=7200.0,
        gt=0,
        description="A forecast older than this is stale and ignored (several refit intervals: a failing "
        "forecast job leaves the reactive path in charge after it).",
    )
    forecast_utilisation: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Fraction of a replica's capacity the upper forecast band is planned at. The band already is "
        "headroom for what the forecast cannot know, so this is higher than target_utilisation; the rest covers "
        "the draining of a queue after the band was exceeded. The reactive thresholds keep their own headroom.",
    )
    forecast_utilisation_max: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="Highest fraction of capacity the upper band is planned at, when the forecast's own measured "
        "error (its calibrated band) is small: the band then plans between forecast_utilisation and this (the "
        "utilisation step, docs/decision.md).",
    )
    forecast_tail_bands: float = Field(
        default=1.4,
        ge=0,
        description="Headroom planned beyond the upper band, in band widths (upper - point): 1.4 is a normal "
        "error's 99.9 % quantile when the band is its 90 % ((3.09 - 1.28) / 1.28).",
    )
    forecast_min_history_s: float = Field(
        default=600.0,
        ge=0,
        description="A forecast fitted on less history than this is ignored (its band is not calibrated yet).",
    )
    forecast_scale_down_stabilisation_s: float = Field(
        default=60.0,
        ge=0,
        description="Scale-down stabilisation window while a usable forecast decides: its upper band over the lead "
        "window already says what capacity is needed until new replicas could be ready.",
    )
    forecast_sanity_factor: float = Field(
        default=10.0,
        gt=1,
        description="A forecast above this many times the recent peak (or one replica's load) is absurd and ignored.",
    )

    # Reactive path (HPA ratio form, Knative panic mode)
    cpu_scale_up_percent: float = Field(
        default=70.0, gt=0, le=100, description="Scale up above this mean CPU %."
    )
    cpu_scale_down_percent: float = Field(
        default=30.0, ge=0, le=100, description="May scale down below this CPU %."
    )
    memory_scale_up_percent: float = Field(
        default=80.0, gt=0, le=100, description="Scale up above this memory %."
    )
    memory_scale_down_percent: float = Field(
        default=40.0, ge=0, le=100, description="May scale down below this memory %."
    )
    latency_p95_scale_up_ms: float = Field(
        default=100.0, gt=0, description="Scale up above this p95 latency."
    )
    queue_length_scale_up: float = Field(
        default=10.0, gt=0, description="Scale up above this many queued requests."
    )
    tolerance: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Ratio changes within this fraction of 1 are ignored (HPA's 10 %).",
    )
    stable_window_s: float = Field(default=60.0, gt=0, description="Metrics are averaged over this window.")
    panic_window_s: float = Field(default=6.0, gt=0, description="Short window that detects sudden bursts.")
    panic_threshold: float = Field(
        default=2.0,
        gt=1,
        description="Panic when the short window asks for this many times the ready replicas (2.0 = 200 %).",
    )
    max_metrics_age_s: float = Field(
        default=60.0, gt=0, description="Metrics whose newest sample is older than this count as missing."
    )

    # Limits applied to the combined recommendation
    max_step_up: int | None = Field(
        default=None, ge=1, description="At most this many replicas added per decision."
    )
    max_step_down: int | None = Field(
        default=None, ge=1, description="At most this many replicas removed per decision."
    )
    scale_down_stabilisation_s: float = Field(
        default=300.0, ge=0, description="Scale down only to the highest recommendation of this window."
    )
    price_per_replica_hour: float = Field(
        default=0.0, ge=0, description="Money per replica-hour (for budgets)."
    )
    budget_replica_hours_per_hour: float | None = Field(
        default=None, gt=0, description="Cost budget: at most this many replica-hours per hour."
    )
    budget_money_per_hour: float | None = Field(
        default=None, gt=0, description="Cost budget: at most this much money per hour (needs a price)."
    )

    # Capacity pools (controller/pools.py, controller/placement.py, docs/cost.md)
    pools: tuple[CapacityPool, ...] = Field(
        default=(),
        description="Where replicas come from (reserved, on-demand, spot), each with its price. Empty: one "
        "on-demand pool at price_per_replica_hour (the budget always uses price_per_replica_hour).",
    )
    spot_max_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Most of the total placed on spot. Whatever the share, the reserved and on-demand replicas "
        "alone always carry what the reactive path needs now, so losing every spot replica at once degrades "
        "the headroom, never the service.",
    )
    spot_reactive_share: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of what the reactive path needs now that the reserved and on-demand replicas keep off "
        "spot. 1 (the default): losing every spot replica at once leaves the capacity the current load needs. "
        "Below 1: cheaper, and an interruption wave costs part of the service for a replica's startup.",
    )
    interruption_notice_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Notice assumed for an interruption reported without one (AWS gives 2 minutes, GCP and "
        "Azure 30 s).",
    )

    # Forecast schedule (used by the forecast job and the simulator, not by decide())
    decision_interval_s: float = Field(default=5.0, gt=0, description="Seconds between two decisions.")
    forecast_refit_interval_s: float = Field(
        default=900.0, gt=0, description="Refit the forecaster this often (once the history is long)."
    )
    forecast_refit_history_fraction: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="While the history is young, refit every this fraction of its length (never more often than "
        "one forecast step, never less often than forecast_refit_interval_s).",
    )
    forecast_history_s: float = Field(
        default=7 * 86400.0, gt=0, description="Seconds of history the forecaster is fitted on."
    )
    forecast_step_s: float = Field(default=60.0, gt=0, description="Resolution of the forecast (bin width).")
    forecast_model: str = Field(
        default="auto", min_length=1, description="Forecasting model name, or 'auto'."
    )
    forecast_statistic: Literal["mean", "max"] = Field(
        default="max",
        description="What the forecaster predicts per bin: the mean rate, or the highest per-second rate of the bin "
        "(so that bursts inside a bin are planned for).",
    )
    forecast_time_compression: float = Field(
        default=1.0,
        ge=1,
        le=10_000,
        description="1 for real traffic. A time-compressed replay (the demo plays a day in minutes) sets its "
        "compression factor so the forecaster still sees days as days (forecaster/timescale.py).",
    )

    # Learned capacity (controller/capacity.py, docs/decision.md)
    capacity_mode: Literal["configured", "learned"] = Field(
        default="configured",
        description="'configured': replica_capacity_rps as given. 'learned': estimated from the deployment's own "
        "observations (load per replica against p95 latency, queue and CPU), replica_capacity_rps being used until "
        "the estimate is confident.",
    )
    capacity_latency_slo_ms: float = Field(
        default=50.0, gt=0, description="The p95 latency a replica's capacity is measured against (its SLO)."
    )
    capacity_cpu_saturation_percent: float = Field(
        default=90.0, gt=0, le=10_000, description="CPU per replica (100 = one core) taken as saturated."
    )
    capacity_min_confidence: float = Field(
        default=0.5, ge=0, le=1, description="A learned capacity is used once its confidence reaches this."
    )
    capacity_probe_step: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="While only a lower bound is known, the capacity in use rises by this share every probe "
        "interval, never past twice the bound (the highest load served well): loads rise until the knee shows.",
    )
    capacity_probe_interval_s: float = Field(
        default=300.0, gt=0, description="How often the probed capacity may rise while learning upward."
    )
    capacity_half_life_s: float = Field(
        default=86_400.0, gt=0, description="Capacity evidence loses half its weight after this long."
    )

    # Warm pool (controller/backends/local.py, docs/zero.md): parked replicas that join in well under a second
    warm_pool_size: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Replicas kept started, loaded and warmed but parked (not serving, not counted as ready), so "
        "that a scale-up (from zero especially) joins one at once instead of waiting a full startup. Backends "
        "without a pool (Kubernetes, Swarm) ignore it. 0: no pool.",
    )
    parked_price_per_replica_hour: float = Field(
        default=0.0,
        ge=0,
        description="What one parked replica costs per hour (memory held, CPU idle), for cost reports; often a "
        "fraction of price_per_replica_hour.",
    )

    @model_validator(mode="before")
    @classmethod
    def _learned_shorthand(cls, data: Any) -> Any:
        """``"replica_capacity_rps": "learned"`` means capacity_mode 'learned' from the default starting value."""
        if isinstance(data, dict) and data.get("replica_capacity_rps") == "learned":
            data = {k: v for k, v in data.items() if k != "replica_capacity_rps"}
            data["capacity_mode"] = "learned"
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas}); "
                "raise max_replicas or lower min_replicas"
            )
        if self.cpu_scale_down_percent >= self.cpu_scale_up_percent:
            raise ValueError(
                f"cpu_scale_down_percent ({self.cpu_scale_down_percent}) must be below cpu_scale_up_percent "
                f"({self.cpu_scale_up_percent}), or replicas would flap"
            )
        if self.memory_scale_down_percent >= self.memory_scale_up_percent:
            raise ValueError(
                f"memory_scale_down_percent ({self.memory_scale_down_percent}) must be below "
                f"memory_scale_up_percent ({self.memory_scale_up_percent}), or replicas would flap"
            )
        if self.panic_window_s > self.stable_window_s:
            raise ValueError(
                f"panic_window_s ({self.panic_window_s}) must not exceed stable_window_s ({self.stable_window_s})"
            )
        if self.forecast_utilisation_max < self.forecast_utilisation:
            raise ValueError(
                f"forecast_utilisation_max ({self.forecast_utilisation_max}) must be >= forecast_utilisation "
                f"({self.forecast_utilisation}): it is the hottest the upper band is planned at"
            )
        check_pools(self.pools, self.max_replicas)
        if self.budget_money_per_hour is not None and self.price_per_replica_hour <= 0:
            raise ValueError("budget_money_per_hour needs price_per_replica_hour > 0 to be enforced")
        return self

    @property
    def planned_rps_per_replica(self) -> float:
        """Load one replica is planned to carry: capacity times target utilisation."""
        return self.replica_capacity_rps * self.target_utilisation
