// prewarm dashboard: draws each deployment's chart with uPlot and refreshes charts and panels every few seconds.
// Settings come from the <body> data attributes the server wrote; no build step, no other dependency.
(function () {
  "use strict";

  const body = document.body;
  const refreshMs = Math.max(1, parseFloat(body.dataset.refreshS || "5")) * 1000;
  const minutes = parseFloat(body.dataset.minutes || "60");
  const api = body.dataset.api || "/dashboard/api";
  const pageEnd = new URLSearchParams(window.location.search).get("end");
  const status = document.getElementById("status");
  const charts = {};
  const nowByChart = {};
  // Exposed for people poking at the page (and for the browser test): the uPlot objects and the last payloads.
  const state = { charts: charts, payloads: {}, refreshes: 0, failures: 0 };
  window.prewarmDashboard = state;

  const utcDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
  const hourMinute = uPlot.fmtDate("{HH}:{mm}");

  function query(extra) {
    const params = new URLSearchParams(extra);
    if (pageEnd !== null) params.set("end", pageEnd);
    const text = params.toString();
    return text ? "?" + text : "";
  }

  function toData(p) {
    return [
      p.t, p.rps, p.forecast_point, p.forecast_lower, p.forecast_upper,
      p.replicas_desired, p.replicas_current, p.replicas_ready,
    ];
  }

  function rangeFrom(floor, headroom) {
    return function (u, min, max) {
      const top = max === null || !isFinite(max) ? floor : Math.max(floor, max * headroom);
      return [0, top];
    };
  }

  function drawNowLine(name) {
    return function (u) {
      const now = nowByChart[name];
      if (now === undefined || now < u.scales.x.min || now > u.scales.x.max) return;
      const x = Math.round(u.valToPos(now, "x", true));
      const ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = "rgba(0,0,0,0.35)";
      ctx.setLineDash([2, 3]);
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.restore();
    };
  }

  function makeChart(name, el, p) {
    const stepped = uPlot.paths.stepped({ align: 1 });
    const opts = {
      width: Math.max(320, el.clientWidth),
      height: 300,
      tzDate: utcDate,
      scales: {
        x: { time: true },
        rps: { range: rangeFrom(1, 1.15) },
        replicas: { range: rangeFrom(2, 1.25) },
      },
      axes: [
        { values: (u, splits) => splits.map((s) => hourMinute(utcDate(s))) },
        { scale: "rps", label: "requests / s" },
        { scale: "replicas", side: 1, label: "replicas", grid: { show: false } },
      ],
      series: [
        { label: "time (UTC)", value: "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}" },
        { label: "actual rps", scale: "rps", stroke: "#1f6feb", width: 1.5 },
        { label: "forecast", scale: "rps", stroke: "#8250df", width: 1.5, dash: [6, 4], spanGaps: true },
        { label: "forecast low", scale: "rps", stroke: "rgba(130,80,223,0.35)", spanGaps: true },
        { label: "forecast high", scale: "rps", stroke: "rgba(130,80,223,0.35)", spanGaps: true },
        { label: "desired replicas", scale: "replicas", stroke: "#d1242f", width: 2, paths: stepped },
        { label: "current replicas", scale: "replicas", stroke: "#fb8500", width: 1, paths: stepped },
        { label: "ready replicas", scale: "replicas", stroke: "#1a7f37", width: 1, dash: [3, 2], paths: stepped },
      ],
      bands: [{ series: [4, 3], fill: "rgba(130,80,223,0.14)" }],
      hooks: { draw: [drawNowLine(name)] },
    };
    return new uPlot(opts, toData(p), el);
  }

  function replacePanel(section, html) {
    const panel = section.querySelector("[data-panel]");
    const open = Array.from(panel.querySelectorAll("details")).map((d) => d.open);
    panel.innerHTML = html;
    panel.querySelectorAll("details").forEach((d, i) => { if (open[i]) d.open = true; });
  }

  async function fetchOk(url) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response;
  }

  async function refreshSection(section) {
    const name = section.dataset.deployment;
    const base = api + "/" + encodeURIComponent(name);
    const [seriesResponse, panelResponse] = await Promise.all([
      fetchOk(base + "/series" + query({ minutes: String(minutes) })),
      fetchOk(base + "/panel" + query({})),
    ]);
    const payload = await seriesResponse.json();
    state.payloads[name] = payload;
    nowByChart[name] = payload.now;
    const el = section.querySelector("[data-chart]");
    if (charts[name] === undefined) {
      el.textContent = "";
      charts[name] = makeChart(name, el, payload);
    } else {
      charts[name].setData(toData(payload));
    }
    replacePanel(section, await panelResponse.text());
  }

  async function refreshAll() {
    const sections = Array.from(document.querySelectorAll("section.deployment"));
    const results = await Promise.allSettled(sections.map(refreshSection));
    const failed = results.filter((r) => r.status === "rejected");
    const time = new Date().toISOString().slice(11, 19);
    if (failed.length) {
      state.failures += 1;
      status.textContent = "refresh failed at " + time + " UTC: " + failed[0].reason.message + " (retrying)";
      status.className = "error";
      console.warn("prewarm dashboard refresh failed", failed[0].reason);
    } else {
      state.refreshes += 1;
      status.textContent = "updated " + time + " UTC · refreshes every " + refreshMs / 1000 + " s";
      status.className = "muted";
    }
    window.setTimeout(refreshAll, refreshMs);
  }

  window.addEventListener("resize", function () {
    document.querySelectorAll("section.deployment").forEach(function (section) {
      const chart = charts[section.dataset.deployment];
      const el = section.querySelector("[data-chart]");
      if (chart !== undefined) chart.setSize({ width: Math.max(320, el.clientWidth), height: 300 });
    });
  });

  refreshAll();
})();
