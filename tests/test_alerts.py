"""deploy/prometheus/alerts.yaml: promtool's own checks and unit tests, the runbook and README entries every alert
needs, and every metric the rules read being exported by a real controller (or by the agreed cost metrics)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.controller_support import Controller

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


def _exported(metrics_text: str) -> set[str]:
    """Sample names with at least one sample in a /metrics text (``# HELP`` lines do not count)."""
    return {line.split("{")[0].split(" ")[0] for line in metrics_text.splitlines() if line.startswith("prewarm_")}


@pytest.mark.slow
def test_every_metric_the_rules_read_is_exported_by_a_controller(controller: Controller) -> None:
    controller.post(
        "/api/v1/deployments",
        {
            "name": "digits", "model": "digits_mlp", "backend": "dry-run", "backend_config": {"initial_replicas": 2},
            "min_replicas": 1, "max_replicas": 4, "policy": {"decision_interval_s": 1},
        },
    )  # fmt: skip
    now = time.time()
    samples = [{"metric": "rps", "ts": now - i, "value": 50.0} for i in range(30)]
    samples += [{"metric": "latency_p95_ms", "ts": now - i, "value": 80.0} for i in range(30)]
    controller.post("/api/v1/deployments/digits/samples", {"samples": samples})

    wanted = _metric_names_in_rules() - set(COST_METRICS)

    deadline = time.monotonic() + 30
    while True:
        text: str = controller.get("/metrics")
        missing = wanted - _exported(text)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert missing == set(), "read by the rules, not exported by the controller"
    assert 'prewarm_controller_forecast_state{deployment="digits",state="missing"} 1.0' in text
    # 80 ms p95 against the default 50 ms SLO: the seconds pushed are measured and count as violating.
    measured = re.search(r'prewarm_controller_latency_measured_seconds_total\{deployment="digits"\} (\S+)', text)
    violating = re.search(
        r'prewarm_controller_latency_slo_violation_seconds_total\{deployment="digits"\} (\S+)', text
    )
    assert measured and violating and float(measured.group(1)) > 0
    assert float(violating.group(1)) == float(measured.group(1))
    assert 'prewarm_controller_max_replicas{deployment="digits"} 4.0' in text


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
