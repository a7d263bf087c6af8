"""Human-readable output of a simulation: a text table, a Markdown summary with the goals, and a PNG plot."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from controller.simulation.metrics import violating_seconds
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
        models = ", ".join(f"{k} {v}" for k, v in sorted(result.prewarm_models.items(), key=lambda kv: -kv[1]))
        parts += [
            f"prewarm decisions by source: {sources}; forecast refits: {result.prewarm_refits} ({models}).",
            "",
        ]
    prewarm = result.runs.get("prewarm")
    if prewarm is not None:
        bad = np.flatnonzero(violating_seconds(prewarm, result.workload.arrivals, result.cluster))
        parts += [f"prewarm's SLO-violating seconds ({bad.size}): {second_ranges(bad)}.", ""]
    if plot_name:
        parts += [f"![demand and capacity]({plot_name})", ""]
    return "\n".join(parts)


def second_ranges(seconds: np.ndarray, limit: int = 20) -> str:
    """Sorted seconds as ranges, e.g. ``34-57, 450, 1324``; at most ``limit`` ranges, then how many more."""
    if seconds.size == 0:
        return "none"
    breaks = np.flatnonzero(np.diff(seconds) > 1)
    starts = np.concatenate(([seconds[0]], seconds[breaks + 1]))
    ends = np.concatenate((seconds[breaks], [seconds[-1]]))
    shown = [f"{a}" if a == b else f"{a}-{b}" for a, b in zip(starts[:limit], ends[:limit], strict=True)]
    more = len(starts) - limit
    return ", ".join(shown) + (f" and {more} more ranges" if more > 0 else "")


POLICY_COLOURS = {
    "static-peak": "tab:blue",
    "hpa": "tab:orange",
    "kpa": "tab:green",
    "prewarm": "tab:red",
    "hpa-tuned": "tab:purple",
    "oracle": "tab:brown",
}
DAY_S = 86_400


def zoom_window(arrivals: np.ndarray) -> tuple[int, int]:
    """The seconds shown in detail: the whole trace up to a day long, else the whole day with the highest peak."""
    n = len(arrivals)
    if n <= DAY_S:
        return 0, n
    days = n // DAY_S
    peaks = arrivals[: days * DAY_S].reshape(days, DAY_S).max(axis=1)
    start = int(np.argmax(peaks)) * DAY_S
    return start, start + DAY_S


def _binned(x: np.ndarray, bin_s: int) -> np.ndarray:
    bins = len(x) // bin_s
    block = x[: bins * bin_s].reshape(bins, bin_s)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.asarray(np.nanmean(block, axis=1))


def plot(result: SimulationResult, path: Path) -> None:
    """Two panels a person can read at a glance.

    Top: one day in detail (the whole trace if shorter; else the day with the highest peak): demand, each policy's
    ready capacity, and prewarm's forecast band (10-90 %) and point as they were known at each moment. Bottom: the
    replicas each policy paid for over the whole trace, and its total cost.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrivals = result.workload.arrivals
    capacity = result.cluster.replica_capacity_rps
    start, end = zoom_window(arrivals)
    span = end - start
    bin_s = 60 if span > 6 * 3600 else 10
    hours = (start + np.arange(span // bin_s) * bin_s) / 3600.0

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 9), height_ratios=(3, 2))
    prewarm = result.runs.get("prewarm")
    if prewarm is not None and "forecast_point_rps" in prewarm.extras:
        lower = _binned(prewarm.extras["forecast_lower_rps"][start:end], bin_s)
        point = _binned(prewarm.extras["forecast_point_rps"][start:end], bin_s)
        upper = _binned(prewarm.extras["forecast_upper_rps"][start:end], bin_s)
        statistic = "peak second" if result.policy.forecast_statistic == "max" else "mean"
        step = f"{result.policy.forecast_step_s:g} s"
        top.fill_between(
            hours, lower, upper, color="tab:red", alpha=0.12, lw=0, step="post",
            label=f"prewarm forecast 10-90 % band ({statistic} per {step})",
        )  # fmt: skip
        top.step(hours, point, where="post", color="tab:red", lw=0.7, ls="--", label="prewarm forecast point")
    top.plot(hours, _binned(arrivals[start:end], bin_s), color="black", lw=0.8, label="demand (rps)")
    for name, run in result.runs.items():
        colour = POLICY_COLOURS.get(name.split(" ")[0])
        top.step(
            hours, _binned(run.ready[start:end], bin_s) * capacity, where="post", lw=1.0, color=colour,
            label=f"{name} capacity",
        )  # fmt: skip
    if prewarm is not None:
        bad = np.flatnonzero(violating_seconds(prewarm, arrivals, result.cluster)[start:end]) + start
        if bad.size:
            top.plot(
                bad / 3600.0, np.zeros(bad.size), "|", color="tab:red", ms=12,
                label=f"prewarm SLO-violating seconds ({bad.size})",
            )  # fmt: skip
    shown = "the whole trace" if span == len(arrivals) else "the day with the highest peak"
    top.set_title(
        f"{result.workload.name} x{result.workload.scale:.3g}: demand and ready capacity, {shown} "
        f"({bin_s} s means)"
    )
    top.set_xlabel("hours since trace start")
    top.set_ylabel("requests per second")
    top.legend(loc="upper left", fontsize=8, ncol=3)

    whole_bin_s = 3600 if len(arrivals) > 2 * DAY_S else 60
    whole_hours = np.arange(len(arrivals) // whole_bin_s) * whole_bin_s / 3600.0
    for name, run in result.runs.items():
        cost = float(run.billed.sum()) / 3600.0 * result.cluster.price_per_replica_hour
        bottom.step(
            whole_hours, _binned(run.billed, whole_bin_s), where="post", lw=1.0,
            color=POLICY_COLOURS.get(name.split(" ")[0]), label=f"{name}: cost {cost:.2f}",
        )  # fmt: skip
    bottom.set_title(
        f"replicas paid for over the whole trace ({whole_bin_s // 60} min means); total cost in the legend"
    )
    bottom.set_xlabel("hours since trace start")
    bottom.set_ylabel("replicas")
    bottom.legend(loc="upper right", fontsize=8, ncol=3)
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
