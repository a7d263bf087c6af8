// prewarm fleet overview: re-fetches the table (counts, rows, pager) every few seconds with the page's own query.
(function () {
  "use strict";

  const body = document.body;
  const refreshMs = Math.max(1, parseFloat(body.dataset.refreshS || "5")) * 1000;
  const endpoint = body.dataset.fleet || "/dashboard/fleet";
  const target = document.querySelector("[data-fleet-table]");
  const status = document.getElementById("status");
  // Exposed for people poking at the page (and for the browser test).
  const state = { refreshes: 0, failures: 0 };
  window.prewarmFleet = state;

  async function refresh() {
    try {
      const response = await fetch(endpoint + window.location.search, { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      target.innerHTML = await response.text();
      state.refreshes += 1;
      status.textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
      status.classList.remove("error");
    } catch (error) {
      state.failures += 1;
      status.textContent = "refresh failed: " + error.message;
      status.classList.add("error");
    }
  }

  setInterval(refresh, refreshMs);
})();
