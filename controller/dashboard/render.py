"""Server-side HTML of the dashboard: the page shell and each deployment's side panel (pure functions of values).

Every piece of stored text (reasons, override notes, names) goes through ``html.escape``; the page carries no inline
script, so its settings travel in ``data-`` attributes that ``dashboard.js`` reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from controller.dashboard.data import CostView, DecisionView, OverrideView, PanelView, ReplicasView

STATIC = "/dashboard/static"
POLICY_HIGHLIGHTS = (
    ("min_replicas", "min replicas"),
    ("max_replicas", "max replicas"),
    ("replica_capacity_rps", "capacity per replica (rps)"),
    ("target_utilisation", "target utilisation"),
    ("default_replica_startup_s", "assumed startup (s)"),
    ("lead_time_margin_s", "lead-time margin (s)"),
    ("horizon_s", "horizon after lead time (s)"),
)
WINDOWS_MIN = (15, 60, 360, 1440)


def _time(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f'<time datetime="{moment.isoformat()}">{moment:%H:%M:%S}</time>'


def _reasons(reasons: list[str]) -> str:
    if not reasons:
        return '<ul class="reasons"><li class="muted">no reason recorded</li></ul>'
    return '<ul class="reasons">' + "".join(f"<li>{escape(r)}</li>" for r in reasons) + "</ul>"


def _decision_line(decision: DecisionView) -> str:
    acted = "" if decision.applied else ' <span class="tag">not applied</span>'
    return (
        f"{_time(decision.ts)} · {decision.current} → <strong>{decision.desired}</strong> replicas"
        f' · <span class="source">{escape(decision.source)}</span>{acted}'
    )


def _count(value: int | None) -> str:
    return "–" if value is None else str(value)


def _replicas(replicas: ReplicasView | None) -> str:
    """Ready and desired replicas; at zero, plainly so, idle since when and the next planned wake-up."""
    if replicas is None:
        return '<h3>Replicas</h3><p class="muted">no controller has reported yet</p>'
    line = f'<p class="replicas"><strong>{_count(replicas.ready)}</strong> ready / {_count(replicas.desired)} desired'
    if not replicas.at_zero:
        return f"<h3>Replicas</h3>{line}</p>"
    idle = (
        f'<dt>idle since</dt><dd class="idle-since">{_time(replicas.idle_since)} UTC</dd>'
        if replicas.idle_since is not None
        else ""
    )
    wake = (
        f"{_time(replicas.next_wake_at)} UTC"
        if replicas.next_wake_at is not None
        else '<span class="muted">none planned: the first request wakes it</span>'
    )
    return (
        f'<h3>Replicas</h3>{line} <span class="tag zero">at zero</span></p>'
        f'<dl class="zero">{idle}<dt>next wake-up at</dt><dd class="next-wake">{wake}</dd></dl>'
    )


def _latest(latest: DecisionView | None) -> str:
    if latest is None:
        return '<h3>Latest decision</h3><p class="muted">no decision yet</p>'
    return f'<h3>Latest decision</h3><p class="latest">{_decision_line(latest)}</p>{_reasons(latest.reasons)}'


def _policy(panel: PanelView) -> str:
    if panel.policy_version is None:
        return '<h3>Policy</h3><p class="muted">no policy stored</p>'
    rows = "".join(
        f"<dt>{escape(label)}</dt><dd>{escape(str(panel.policy[key]))}</dd>"
        for key, label in POLICY_HIGHLIGHTS
        if key in panel.policy
    )
    full = escape(json.dumps(panel.policy, indent=2, sort_keys=True))
    return (
        f'<h3>Policy <span class="muted">version {panel.policy_version}</span></h3><dl>{rows}</dl>'
        f"<details><summary>full policy</summary><pre>{full}</pre></details>"
    )


def _capacity(panel: PanelView) -> str:
    """The capacity the last decision planned with and, when learned, what the evidence says (and how sure)."""
    shown = panel.capacity or {}
    mode = shown.get("mode") or panel.policy.get("capacity_mode", "configured")
    in_use = shown.get("in_use_rps")
    rows = f"<dt>mode</dt><dd>{escape(str(mode))}</dd>"
    if isinstance(in_use, int | float):
        rows += f"<dt>in use (rps per replica)</dt><dd>{in_use:.1f}</dd>"
    estimate = shown.get("estimate")
    if isinstance(estimate, dict) and isinstance(estimate.get("rps_per_replica"), int | float):
        bound = "" if estimate.get("bracketed") else "at least "
        rows += (
            f"<dt>learned</dt><dd>{bound}{estimate['rps_per_replica']:.1f} rps "
            f'<span class="muted">({escape(str(estimate.get("basis")))}, '
            f"confidence {float(estimate.get('confidence') or 0):.2f}, "
            f"{int(estimate.get('observations') or 0)} s of evidence)</span></dd>"
        )
        strain = estimate.get("strained_rps")
        if isinstance(strain, int | float):
            rows += f"<dt>strained from (rps per replica)</dt><dd>{strain:.1f}</dd>"
    elif mode == "learned":
        rows += '<dt>learned</dt><dd class="muted">no evidence yet</dd>'
    return f'<h3>Capacity</h3><dl class="capacity">{rows}</dl>'


def _override_row(override: OverrideView) -> str:
    value = "" if override.value is None else f" {override.value}"
    return (
        f'<tr><td class="kind">{escape(override.kind)}{value}</td><td>until {_time(override.ends_at)}</td>'
        f'<td>{escape(override.reason)} <span class="muted">({escape(override.author)})</span></td></tr>'
    )


def _overrides(overrides: list[OverrideView]) -> str:
    if not overrides:
        return '<h3>Active overrides</h3><p class="muted">none: the policy decides</p>'
    rows = "".join(_override_row(o) for o in overrides)
    return f'<h3>Active overrides</h3><table class="overrides">{rows}</table>'


def _changes(changes: list[DecisionView]) -> str:
    if not changes:
        return '<h3>Recent scaling changes</h3><p class="muted">none yet</p>'
    rows = "".join(f"<li>{_decision_line(d)}{_reasons(d.reasons)}</li>" for d in changes)
    return f'<h3>Recent scaling changes</h3><ol class="changes">{rows}</ol>'


def _percent(ratio: float | None) -> str:
    return "–" if ratio is None else f"{100 * ratio:.1f} %"


def _cost(cost: CostView | None) -> str:
    if cost is None:
        return '<h3>Cost</h3><p class="muted">no decisions to price yet</p>'
    pools = " · ".join(
        f"{escape(p)} {v:.2f}" for p, v in cost.per_hour.items() if v > 0 or len(cost.per_hour) == 1
    )
    return (
        f'<h3>Cost</h3><dl class="cost" data-cost><dt>now</dt><dd data-cost-per-hour>'
        f'{sum(cost.per_hour.values()):.2f} / h <span class="muted">({pools})</span></dd>'
        f"<dt>last {cost.window_h:.1f} h</dt><dd>{cost.total:.2f}</dd>"
        f"<dt>saving vs on-demand only</dt><dd data-cost-saving>{_percent(cost.saving_vs_on_demand)}</dd>"
        f"<dt>saving vs static peak</dt><dd>{_percent(cost.saving_vs_static_peak)}</dd></dl>"
    )


def panel_html(panel: PanelView) -> str:
    """The side panel of one deployment (replaced as a whole on every refresh)."""
    return (
        f'<div class="cell">{_replicas(panel.replicas)}</div>'
        f'<div class="cell">{_latest(panel.latest)}</div>'
        f'<div class="cell">{_cost(panel.cost)}</div>'
        f'<div class="cell">{_overrides(panel.overrides)}</div>'
        f'<div class="cell">{_policy(panel)}</div>'
        f'<div class="cell">{_capacity(panel)}</div>'
        f'<div class="cell wide">{_changes(panel.changes)}</div>'
    )


def _section(panel: PanelView) -> str:
    name = escape(panel.name)
    return (
        f'<section class="deployment" id="deployment-{quote(panel.name)}" data-deployment="{name}">'
        f"<h2>{name} <small>{escape(panel.model)} · {escape(panel.backend)} backend · "
        f"{panel.min_replicas}–{panel.max_replicas} replicas</small></h2>"
        '<div class="chart" data-chart><p class="muted chart-note" data-chart-note>loading chart…</p></div>'
        f'<div class="panel" data-panel>{panel_html(panel)}</div>'
        "</section>"
    )


def page_html(panels: list[PanelView], *, now: datetime, refresh_s: float, minutes: float) -> str:
    """The whole dashboard page: one section per deployment; the script fills the charts and refreshes."""
    windows = " ".join(
        f'<a href="?minutes={m}"{" class=current" if m == minutes else ""}>'
        f"{m // 60 if m >= 60 else m}{'h' if m >= 60 else 'm'}</a>"
        for m in WINDOWS_MIN
    )
    nav = " ".join(f'<a href="#deployment-{quote(p.name)}">{escape(p.name)}</a>' for p in panels)
    body = "".join(_section(p) for p in panels) or (
        '<p class="muted empty">No deployments yet: create one with <code>POST /api/v1/deployments</code>.</p>'
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>prewarm dashboard</title>"
        f'<link rel="icon" href="data:,"><link rel="stylesheet" href="{STATIC}/uPlot.min.css">'
        f'<link rel="stylesheet" href="{STATIC}/dashboard.css"></head>'
        f'<body data-refresh-s="{refresh_s:g}" data-minutes="{minutes:g}" data-api="/dashboard/api">'
        f'<header><h1><a href="/dashboard">prewarm</a></h1><nav class="deployments">{nav}</nav>'
        f'<nav class="windows">window: {windows}</nav>'
        f'<span id="status" class="muted">rendered {_time(now)} UTC · refreshes every {refresh_s:g} s</span>'
        f"</header><main>{body}</main>"
        f'<script src="{STATIC}/uPlot.iife.min.js"></script><script src="{STATIC}/dashboard.js"></script>'
        "</body></html>"
    )
