"""Server-side HTML of the fleet overview: counts per state, a filter, and one row per deployment, paged.

Like the deployment page it carries no inline script; ``fleet.js`` re-fetches the table fragment every few seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from urllib.parse import quote, urlencode

from controller.dashboard.render import STATIC
from controller.fleet import FLEET_STATES, FleetRow, FleetState

STATE_LABELS = {
    "all": "all",
    "errors": "with errors",
    "maxed": "at max replicas",
    "mismatch": "ready ≠ desired",
    "reactive": "forecast not used",
    "stale": "not decided for 1 min",
}


def _age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return '<span class="muted">never</span>'
    seconds = max(0.0, (now - moment).total_seconds())
    text = f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"
    return f'<time datetime="{moment.astimezone(UTC).isoformat()}">{text}</time>'


def _count(value: int | None) -> str:
    return "–" if value is None else str(value)


def _row(row: FleetRow, now: datetime) -> str:
    link = f"/dashboard/deployments/{quote(row.name)}"
    replicas = f"{_count(row.ready_replicas)} / {_count(row.desired_replicas)}"
    mismatch = row.desired_replicas is not None and row.ready_replicas != row.desired_replicas
    maxed = row.desired_replicas is not None and row.desired_replicas >= row.max_replicas
    flags = (' <span class="tag">max</span>' if maxed else "") + (' <span class="tag">starting</span>' if mismatch else "")
    forecast = (
        f"{row.forecast_upper_rps:.0f} rps" if row.forecast_used and row.forecast_upper_rps is not None else
        '<span class="muted">not used</span>'
    )  # fmt: skip
    error = (
        f'<span class="error">{escape(row.error_stage)}</span> {escape((row.error_message or "")[:160])}'
        f' <span class="muted">({row.errors_total})</span>'
        if row.error_stage
        else (f'<span class="muted">{row.errors_total} earlier</span>' if row.errors_total else "")
    )
    owner = escape(row.owner) if row.owner else '<span class="error">none</span>'
    stale = ' class="stale"' if row.stale else ""
    return (
        f'<tr data-name="{escape(row.name)}"{stale}><td><a href="{link}">{escape(row.name)}</a>'
        f' <span class="muted">{escape(row.backend)}</span></td>'
        f'<td class="num">{replicas}{flags}</td>'
        f'<td><span class="source">{escape(row.step or "–")}</span>'
        f'<div class="reason muted">{escape(row.reason[:200])}</div></td>'
        f"<td>{forecast}</td><td>{error}</td><td>{owner}</td><td>{_age(row.decided_at, now)}</td></tr>"
    )


def _query(name: str, state: str, offset: int, limit: int) -> str:
    params = {k: v for k, v in (("name", name), ("state", state), ("offset", offset), ("limit", limit)) if v}
    return "?" + urlencode(params) if params else ""


def fleet_table(
    rows: list[FleetRow], total: int, counts: dict[str, int], *, name: str, state: FleetState, limit: int,
    offset: int, now: datetime,
) -> str:  # fmt: skip
    """The part the page refreshes: the state counts, the table and the pager."""
    tabs = " ".join(
        f'<a href="/dashboard{_query(name, s, 0, limit)}" data-state="{s}"'
        f'{" class=current" if s == state else ""}>{escape(STATE_LABELS[s])} <b>{counts.get(s, 0)}</b></a>'
        for s in FLEET_STATES
    )
    body = "".join(_row(r, now) for r in rows) or (
        '<tr><td colspan="7" class="muted">No deployment matches. Create one with '
        "<code>POST /api/v1/deployments</code>.</td></tr>"
    )
    last = min(offset + limit, total)
    previous = (
        f'<a rel="prev" href="/dashboard{_query(name, state, max(0, offset - limit), limit)}">← previous</a>'
        if offset > 0
        else ""
    )
    following = (
        f'<a rel="next" href="/dashboard{_query(name, state, offset + limit, limit)}">next →</a>'
        if offset + limit < total
        else ""
    )
    return (
        f'<nav class="states">{tabs}</nav>'
        '<table class="fleet"><thead><tr><th>deployment</th><th>ready / desired</th><th>step in charge</th>'
        "<th>forecast (upper)</th><th>errors</th><th>owner</th><th>decided</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
        f'<p class="pager"><span data-range>{offset + 1 if total else 0}–{last} of {total}</span> '
        f"{previous} {following}</p>"
    )


def fleet_page_html(table: str, *, name: str, state: FleetState, limit: int, refresh_s: float, now: datetime) -> str:
    options = "".join(
        f'<option value="{s}"{" selected" if s == state else ""}>{escape(STATE_LABELS[s])}</option>'
        for s in FLEET_STATES
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>prewarm fleet</title>"
        f'<link rel="icon" href="data:,"><link rel="stylesheet" href="{STATIC}/dashboard.css"></head>'
        f'<body data-refresh-s="{refresh_s:g}" data-fleet="/dashboard/fleet">'
        '<header><h1>prewarm fleet</h1><form class="filter" method="get" action="/dashboard">'
        f'<input type="search" name="name" value="{escape(name)}" placeholder="deployment name" maxlength="63">'
        f'<select name="state">{options}</select><input type="hidden" name="limit" value="{limit}">'
        '<button type="submit">filter</button></form>'
        f'<span id="status" class="muted">rendered {now:%H:%M:%S} UTC · refreshes every {refresh_s:g} s</span>'
        f'</header><main><div data-fleet-table>{table}</div></main>'
        f'<script src="{STATIC}/fleet.js"></script></body></html>'
    )
