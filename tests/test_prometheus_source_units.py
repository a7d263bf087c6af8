"""The Prometheus source's pure parts: query templates, placing results on the time axis, configuration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.sources.prometheus import (
    DEFAULT_QUERIES,
    ObservationWindow,
    PrometheusSource,
    fill_axis,
    render_query,
)
from prewarm import metric_names as m
from prewarm.settings import Settings


def test_render_query_fills_selector_window_and_deployment() -> None:
    query = render_query("sum(rate(x{$selector}[$window]))", "resnet", 'app="$deployment"', "1m")
    assert query == 'sum(rate(x{app="resnet"}[1m]))'


def test_render_query_keeps_the_deployment_inside_its_string_literal() -> None:
    query = render_query("x{$selector}", 'a"} or y{b="', 'app="$deployment"', "1m")
    assert query == 'x{app="a\\"} or y{b=\\""}'


def test_default_queries_cover_the_reactive_inputs() -> None:
    assert {m.REQUESTS_RPS, m.LATENCY_P95_MS, m.CPU_PERCENT, m.QUEUE_LENGTH, m.MEMORY_BYTES} <= set(
        DEFAULT_QUERIES
    )
    for template in DEFAULT_QUERIES.values():
        assert "$selector" in template


def test_fill_axis_places_points_by_timestamp_and_leaves_gaps_nan() -> None:
    result = [{"metric": {}, "values": [[100, "1.5"], [102, "2"], [103, "NaN"]]}]
    values = fill_axis(result, start_s=100.0, step_s=1.0, points=5)
    assert values[0] == 1.5 and values[2] == 2.0
    assert np.isnan(values[[1, 3, 4]]).all()


def test_fill_axis_ignores_points_off_the_axis() -> None:
    values = fill_axis([{"values": [[90, "1"], [200, "1"]]}], start_s=100.0, step_s=1.0, points=3)
    assert np.isnan(values).all()


def test_fill_axis_of_an_empty_result_is_all_nan() -> None:
    assert np.isnan(fill_axis([], start_s=0.0, step_s=1.0, points=4)).all()


def test_broken_template_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="rps"):
        PrometheusSource("http://127.0.0.1:9", queries={m.REQUESTS_RPS: "x{$nope}"})


def test_fractional_step_is_refused() -> None:
    source = PrometheusSource("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="whole number"):
        source.window("demo", 1000.0, duration_s=10, step_s=0.5)


def test_from_settings_merges_overrides_and_drops_switched_off_metrics() -> None:
    settings = Settings(
        prometheus_url="http://prom:9090",
        prometheus_queries={m.CPU_PERCENT: "avg(cpu{$selector})", m.MEMORY_BYTES: ""},
        prometheus_rate_window="1m",
    )
    source = PrometheusSource.from_settings(settings)
    assert source.queries[m.CPU_PERCENT] == "avg(cpu{$selector})"
    assert m.MEMORY_BYTES not in source.queries
    assert source.queries[m.REQUESTS_RPS] == DEFAULT_QUERIES[m.REQUESTS_RPS]
    assert source.rate_window == "1m"


def test_from_settings_needs_a_url() -> None:
    with pytest.raises(ValueError, match="PREWARM_PROMETHEUS_URL"):
        PrometheusSource.from_settings(Settings(prometheus_url=""))


def test_window_latest_skips_trailing_gaps() -> None:
    window = ObservationWindow("d", np.arange(4.0), {m.REQUESTS_RPS: np.array([1.0, 2.0, np.nan, np.nan])})
    assert window.latest(m.REQUESTS_RPS) == 2.0
    assert math.isnan(window.latest(m.CPU_PERCENT))
    assert window.complete


def test_window_to_samples_keeps_finite_values_only() -> None:
    window = ObservationWindow("d", np.array([10.0, 11.0]), {m.QUEUE_LENGTH: np.array([np.nan, 3.0])})
    [sample] = window.to_samples()
    assert (sample.deployment, sample.metric, sample.ts, sample.value) == ("d", m.QUEUE_LENGTH, 11.0, 3.0)
