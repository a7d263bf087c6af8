"""Human-readable output of a simulation: a text table, a Markdown summary with the goals, and a PNG plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from controller.simulation.run import SimulationResult


def _lead_summary(leads: list[float | None]) -> str:
    known = [x for x in leads if x is not None]
    if not leads:
        return "no surge"
    if not known:
        return f"{len(leads)} surges, none caught up"
    ahead = sum(1 for x in known if x <= 0)
    return f"median {np.median(known):+.0f} s, {ahead}/{len(leads)} ready before"


def table(result: SimulationResult) -> str:
    """A Markdown table of every policy's figures."""
    lines = [
        "| policy | replica-hours | cost | SLO-violating s | share | dropped | mean utilisation | actions | surge lead |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in result.results.items():
        label = name
        if name == "hpa-tuned":
            label += (
                f" (target {result.hpa_tuned_target:.2f})"
                if result.hpa_tuned_target is not None
                else " (none matched; 0.30)"
            )
        lines.append(
            f"| {label} | {r.cost_replica_hours:.1f} | {r.cost:.2f} | {r.slo_violation_s} | {100 * r.violation_share:.3f} % "
            f"| {r.dropped:.0f} | {100 * r.mean_utilisation:.1f} % | {r.actions} | {_lead_summary(r.surge_lead_s)} |"
        )
    return "\n".join(lines)


def header(result: SimulationResult) -> str:
    w, c = result.workload, result.cluster
    return (
        f"Trace `{w.name}` x{w.scale:.4g}: {w.seconds} s ({w.seconds / 86400:.2f} days) at 1 s "
        f"(trace step {w.trace_step_s} s), {w.arrivals.sum():.0f} requests, peak interval {w.peak_interval_rps:.0f} rps.  \n"
        f"Cluster: replica capacity {c.replica_capacity_rps:g} rps at p95 <= {c.slo_p95_ms:g} ms, startup "
        f"{c.startup_s} s (pre-warm {c.prewarm_s:g} s + scheduling {c.scheduling_delay_s:g} s), "
        f"{c.price_per_replica_hour:g} per replica-hour; static-peak = {result.static_replicas} replicas."
    )


def markdown(result: SimulationResult, plot_name: str | None = None) -> str:
    """The report: setup, the table, the goals with their figures, and the plot."""
    parts = [f"# Simulation: {result.workload.name}", "", header(result), "", table(result), ""]
    goals = result.goals()
    if goals:
        parts += ["## Goals for prewarm", ""]
        for g in goals:
            parts.append(f"- {'met' if g.met else '**missed**'}: {g.name}: {g.detail}")
        parts.append("")
    if result.prewarm_sources:
        sources = ", ".join(
            f"{k} {v}" for k, v in sorted(result.prewarm_sources.items(), key=lambda kv: -kv[1])
        )
        parts += [f"prewarm decisions by source: {sources}; forecast refits: {result.prewarm_refits}.", ""]
    if plot_name:
        parts += [f"![demand and capacity]({plot_name})", ""]
    return "\n".join(parts)


def plot(result: SimulationResult, path: Path) -> None:
    """Demand, each policy's ready capacity and prewarm's forecast band (per-minute means for readability)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = result.workload.seconds
    bin_s = 60 if n > 6 * 3600 else 10
    bins = n // bin_s
    hours = np.arange(bins) * bin_s / 3600.0

    def binned(x: np.ndarray, how: str = "mean") -> np.ndarray:
        block = x[: bins * bin_s].reshape(bins, bin_s)
        return np.nanmax(block, axis=1) if how == "max" else block.mean(axis=1)

    capacity = result.cluster.replica_capacity_rps
    fig, ax = plt.subplots(figsize=(14, 6))
    ax.plot(hours, binned(result.workload.arrivals), color="black", lw=0.8, label="demand (rps)")
    for name, run in result.runs.items():
        ax.step(hours, binned(run.ready) * capacity, lw=0.9, where="post", label=f"{name} capacity")
    band = result.runs.get("prewarm")
    if band is not None and "forecast_upper_rps" in band.extras:
        upper = band.extras["forecast_upper_rps"][: bins * bin_s].reshape(bins, bin_s)
        with np.errstate(all="ignore"):
            shown = np.where(
                np.isfinite(upper).any(axis=1),
                np.nanmax(np.where(np.isfinite(upper), upper, -np.inf), axis=1),
                np.nan,
            )
        ax.plot(hours, shown, color="grey", lw=0.6, ls=":", label="prewarm upper forecast (rps)")
    ax.set_xlabel("hours since trace start")
    ax.set_ylabel("requests per second")
    ax.set_title(f"{result.workload.name} x{result.workload.scale:.3g}: demand and ready capacity per policy")
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: SimulationResult, directory: Path) -> Path:
    """Write ``report.md`` and ``plot.png`` into ``directory``; returns the Markdown path."""
    directory.mkdir(parents=True, exist_ok=True)
    plot(result, directory / "plot.png")
    path = directory / "report.md"
    path.write_text(markdown(result, "plot.png"))
    return path
