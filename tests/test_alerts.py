"""deploy/prometheus/alerts.yaml: promtool's own checks and unit tests, the runbook and README entries every alert
needs, and every metric the rules read being exported by a real controller (or by the agreed cost metrics)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.controller_support import Controller, free_port

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
RULE_TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yaml"
RUNBOOK = ROOT / "docs" / "alerts.md"
# Exported by the controller's cost monitoring (issue 15), names and labels as agreed; not scraped here.
COST_METRICS = {
    "prewarm_cost_per_hour": {"deployment", "pool"},
    "prewarm_cost_total": {"deployment", "pool"},
    "prewarm_cost_saving_ratio": {"deployment", "baseline"},
    "prewarm_spot_interruptions_total": {"deployment", "pool"},
    "prewarm_budget_money_per_hour": {"deployment"},
}
METRIC = re.compile(r"\bprewarm_[a-z0-9_]+")


def _promtool() -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/ensure-system.sh)"
    return promtool


def _alerts() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"] if "alert" in rule]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_fires_and_stays_quiet_as_its_promtool_tests_say() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested quiet"


def test_every_alert_has_severity_summary_description_and_a_runbook_section() -> None:
    headings = {
        _anchor(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")
    }
    for rule in _alerts():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == "docs/alerts.md" and anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in headings, f"{rule['alert']}: no '## {rule['alert']}' section in docs/alerts.md"


def test_the_readme_lists_every_alert() -> None:
    readme = (ROOT / "README.md").read_text()
    for rule in _alerts():
        assert f"| `{rule['alert']}` |" in readme, rule["alert"]


def _metric_names_in_rules() -> set[str]:
    return {name for rule in _alerts() for name in METRIC.findall(rule["expr"])}


@pytest.fixture
def controller(postgres_url: str, tmp_path: Path) -> Iterator[Controller]:
    running = Controller(postgres_url, tmp_path, "alerts-controller")
    running.start()
    yield running
    running.stop()


@contextmanager
def prometheus_with_the_rules(workdir: Path, target: str) -> Iterator[str]:
    """Debian's Prometheus on a free 127.0.0.1 port, loading deploy/prometheus/alerts.yaml and scraping ``target``
    every second (rules evaluated every second)."""
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus package (scripts/ensure-system.sh)"
    config = workdir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{RULES}]\n"
        "scrape_configs:\n"
        "  - job_name: prewarm-controller\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    url = f"http://127.0.0.1:{free_port()}"
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address={url.removeprefix('http://')}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def _exported(metrics_text: str) -> set[str]:
    """Sample names with at least one sample in a /metrics text (``# HELP`` lines do not count)."""
    return {line.split("{")[0].split(" ")[0] for line in metrics_text.splitlines() if line.startswith("prewarm_")}


def _api(url: str, path: str, **params: str) -> Any:
    try:
        answer = httpx.get(f"{url}/api/v1/{path}", params=params, timeout=2)
        return answer.json()["data"] if answer.status_code == 200 else None
    except httpx.HTTPError:  # not listening yet
        return None


@pytest.mark.slow
def test_a_controller_exports_every_metric_the_rules_read_and_prometheus_evaluates_them(
    controller: Controller, tmp_path: Path
) -> None:
    controller.post(
        "/api/v1/deployments",
        {
            "name": "digits", "model": "digits_mlp", "backend": "dry-run", "backend_config": {"initial_replicas": 2},
            "min_replicas": 1, "max_replicas": 4, "policy": {"decision_interval_s": 1},
        },
    )  # fmt: skip
    now = time.time()  # CPU at 140 %: the loop goes to max_replicas (4); p95 80 ms against the default 50 ms SLO
    samples = [{"metric": "cpu_percent", "ts": now - i, "value": 140.0} for i in range(90)]
    samples += [{"metric": "rps", "ts": now - i, "value": 50.0} for i in range(90)]
    samples += [{"metric": "latency_p95_ms", "ts": now - i, "value": 80.0} for i in range(90)]
    controller.post("/api/v1/deployments/digits/samples", {"samples": samples})

    wanted = _metric_names_in_rules() - set(COST_METRICS)
    deadline = time.monotonic() + 30
    while True:
        text: str = controller.get("/metrics")
        missing = wanted - _exported(text)
        if not missing and 'prewarm_controller_desired_replicas{deployment="digits"} 4.0' in text:
            break
        assert time.monotonic() < deadline, f"not exported by the controller: {missing}"
        time.sleep(0.5)
    states = re.findall(r'prewarm_controller_forecast_state\{deployment="digits",state="(\w+)"\} 1\.0', text)
    assert len(states) == 1 and states[0] in ("missing", "young")  # a new deployment: no forecast, or a short one
    measured = re.search(r'prewarm_controller_latency_measured_seconds_total\{deployment="digits"\} (\S+)', text)
    violating = re.search(
        r'prewarm_controller_latency_slo_violation_seconds_total\{deployment="digits"\} (\S+)', text
    )
    assert measured and violating and float(measured.group(1)) > 0
    assert float(violating.group(1)) == float(measured.group(1))

    # A real Prometheus loads the repository's rules, scrapes this controller and evaluates them without error:
    # the deployment at its max makes PrewarmDeploymentMaxedOut pending (it fires after 15 minutes), and
    # PrewarmControllerAbsent, pending only until the first scrape, is gone.
    with prometheus_with_the_rules(tmp_path, controller.url.removeprefix("http://")) as url:
        deadline = time.monotonic() + 30
        while True:
            alerts = _api(url, "alerts") or {"alerts": []}
            pending = {(a["labels"]["alertname"], a["labels"].get("deployment"), a["state"]) for a in alerts["alerts"]}
            absent = any(name == "PrewarmControllerAbsent" for name, _, _ in pending)  # before the first scrape
            if ("PrewarmDeploymentMaxedOut", "digits", "pending") in pending and not absent:
                break
            assert time.monotonic() < deadline, f"alerts: {alerts}"
            time.sleep(0.5)
        groups = _api(url, "rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert {rule["name"] for rule in rules} == {rule["alert"] for rule in _alerts()}
        assert [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"] == []


def test_the_rules_read_only_controller_metrics_and_the_agreed_cost_metrics() -> None:
    names = _metric_names_in_rules()
    unknown = {n for n in names if not n.startswith("prewarm_controller_") and n not in COST_METRICS}
    assert unknown == set()
    expressions = " ".join(rule["expr"] for rule in _alerts())
    checked: set[str] = set()
    for name, labels in COST_METRICS.items():  # the rules aggregate only by labels the cost metrics have
        for by in re.findall(rf"by \(([a-z_, ]+)\) \((?:rate\(|increase\()?{name}\b", expressions):
            assert {label.strip() for label in by.split(",")} <= labels, (name, by)
            checked.add(name)
    assert checked == set(COST_METRICS) - {"prewarm_cost_saving_ratio"}  # the saving is for dashboards
