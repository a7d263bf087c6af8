"""The result blocks of the README and docs are what their commands print (scripts/readme_results.py).

Quick commands are re-run and compared (timing columns aside); slow ones (the 28-day NASA backtest with Prophet,
the simulator benchmark) are checked for shape only.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("readme_results", ROOT / "scripts" / "readme_results.py")
assert _spec and _spec.loader
readme_results = importlib.util.module_from_spec(_spec)
sys.modules["readme_results"] = readme_results
_spec.loader.exec_module(readme_results)

QUICK = (
    "benchmarks.forecast_bounds",
    "benchmarks.simulate_bounds",
    "azure_llm_conv",
    "azure_llm_code",
    "prewarm cost plan",
    "zero_sim --oracle-only",
)


# What each command printed in this run: a command named by several blocks (README and a doc), or run again by the
# regenerate test, runs once (as scripts/readme_results.py itself does with its ``outputs``).
_FRESH: dict[str, str] = {}


def fresh_output(command: str) -> str:
    if command not in _FRESH:
        _FRESH[command] = readme_results.run_command(command)
    return _FRESH[command]


def all_blocks() -> list[tuple[str, object]]:
    blocks = []
    for name in readme_results.DEFAULT_FILES:
        for block in readme_results.find_blocks((ROOT / name).read_text()):
            blocks.append((name, block))
    return blocks


def without_timings(output: str) -> list[str]:
    """Lines of a command's output with the fit+predict seconds column dropped from backtest tables."""
    lines = []
    timed = False
    for line in output.strip("\n").splitlines():
        if line.startswith("| model |") and line.rstrip().endswith("fit+predict s |"):
            timed = True
        if timed and line.startswith("|"):
            line = "|".join(line.split("|")[:-2]) + "|"
        lines.append(line)
    return lines


def test_the_readme_and_docs_hold_the_generated_blocks() -> None:
    commands = [block.command for _, block in all_blocks()]
    assert sum("forecast backtest" in c for c in commands) == 3
    assert "python -m benchmarks.simulate_bench --brief" in commands
    assert "python -m benchmarks.forecast_bounds" in commands
    assert "python -m benchmarks.simulate_bounds" in commands
    assert "python -m benchmarks.simulate_tuning" in commands
    assert "python -m benchmarks.zero_sim --days 7" in commands
    assert any(c.startswith("python -m benchmarks.zero_sim --oracle-only") for c in commands)
    assert any("zero_sim" in c and "--per-minute 0.1,0.3" in c for c in commands)
    assert any(c.startswith("python -m benchmarks.cost_bench --brief") for c in commands)
    assert any(c.startswith("prewarm cost plan") for c in commands)
    for name, block in all_blocks():
        assert block.command.startswith(readme_results.ALLOWED_PREFIXES), (name, block.command)
        assert readme_results.fenced_body(block).strip(), f"{name}: the block of {block.command!r} is empty"


def test_the_slow_blocks_have_the_commands_tables() -> None:
    for _, block in all_blocks():
        body = readme_results.fenced_body(block)
        if "nasa_http_jul1995_1min.csv" in block.command and "forecast backtest" in block.command:
            assert "| profile" in body and "| prophet" in body and "| holt_winters" in body
            assert "pinball (upper, q 0.9)" in body and "below / above band" in body
            assert "168 origins" in body
        if "fleet_bench" in block.command:
            assert "| deployments | controllers | decisions/s (asked) | lag p50 | lag p99 |" in body
            assert "| 1,000 | 1 |" in body and "| 1,000 | 2 |" in body
            assert "Largest fleet" in body or "No fleet size measured held" in body
        if "store_bench" in block.command:
            assert "| insert 100,000 samples" in body and "per deployment per day after rollup" in body
        if "simulate_bench" in block.command:
            for policy in ("static-peak", "hpa", "kpa", "prewarm", "hpa-tuned", "oracle"):
                assert f"| {policy}" in body
            assert "| goal | nasa | conv | code | tune | show |" in body
        if "zero_sim" in block.command and "--oracle-only" in block.command:
            assert "| requests/min | requests | quietest, busiest period (requests/min) |" in body
        elif "zero_sim" in block.command:
            for policy in ("prewarm-min1", "prewarm-zero", "kpa-zero", "hpa-min1"):
                assert f"| {policy} |" in body
            if "--per-minute" not in block.command:
                assert "**nasa_http_jul1995_1min** thinned to 1 request/min" in body
            else:
                assert (
                    "sweep of the sparsity" in body
                    and "| requests/min | requests | prewarm-zero cost" in body
                )
            assert "prewarm-zero >= 40 % cheaper than prewarm-min1" in body
            assert "prewarm-zero >= 5x fewer cold-started requests than kpa-zero" in body
            assert "rate oracle (knows each 1 h period's rate)" in body
        if "cost_bench" in block.command:
            assert "| prewarm on-demand only |" in body and "| hpa on-demand |" in body
            assert "| static reserved for the peak" in body and "| prewarm with pools, high" in body
            assert "| trace | interruptions | goal |" in body
        if "simulate_tuning" in block.command:
            assert "| forecast_utilisation_max |" in body and "hottest value" in body
        if "replica_startup" in block.command:
            assert "| local process: spawn to first ready probe |" in body
            assert "| Swarm task: created to running and healthy |" in body
            assert "Lead time (measured startup + margin" in body


@pytest.mark.parametrize("key", QUICK)
def test_quick_blocks_match_a_fresh_run(key: str) -> None:
    matching = [block for _, block in all_blocks() if key in block.command]
    assert matching, f"no block runs {key}"
    for block in matching:
        fresh = fresh_output(block.command)
        assert without_timings(readme_results.fenced_body(block)) == without_timings(fresh)


def test_regenerate_replaces_only_the_matching_blocks() -> None:
    text = (
        "intro\n<!-- text output of: python -m benchmarks.forecast_bounds -->\nstale\n<!-- end of output -->\n"
        "middle\n<!-- output of: prewarm --version -->\nkept\n<!-- end of output -->\nend\n"
    )
    command = "python -m benchmarks.forecast_bounds"
    new = readme_results.regenerate(text, match="forecast_bounds", outputs={command: fresh_output(command)})
    assert "stale" not in new and "kept" in new
    assert new.startswith("intro\n") and new.endswith("end\n") and "\nmiddle\n" in new
    block = readme_results.find_blocks(new)[0]
    assert "| best flat line over each horizon" in readme_results.fenced_body(block)


def test_commands_other_than_prewarm_and_benchmarks_are_refused() -> None:
    with pytest.raises(ValueError, match="refusing"):
        readme_results.run_command("rm -rf /tmp/nothing")
