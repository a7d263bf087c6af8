"""Property-based fuzzing of every endpoint from the app's own OpenAPI schema: no 5xx, ever."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from inference.app import ReplicaApp
from inference.config import ReplicaConfig
from inference.testing import DEFAULT_MODEL, DEFAULT_MODEL_REPO, replica_process

app = ReplicaApp(ReplicaConfig(str(DEFAULT_MODEL_REPO), DEFAULT_MODEL, max_body_bytes=64 * 1024))
app.model = app.load_and_warm()
app.ready = True  # no batcher (batching off): serving needs no running event loop


async def served_without_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The warmed app; lifespan events (sent around every call by the ASGI transport) are acknowledged only."""
    if scope["type"] != "lifespan":
        await app(scope, receive, send)
        return
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


schema = schemathesis.openapi.from_asgi("/openapi.json", served_without_lifespan)
client = TestClient(served_without_lifespan)  # type: ignore[arg-type]


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])


@schema.include(path_regex="/infer$").parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_from_infer_bodies_for_the_served_model(case: schemathesis.Case) -> None:
    case.path_parameters = {"name": DEFAULT_MODEL}
    case.call_and_validate(checks=[not_a_server_error])


near_valid_tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input", "Input", ""]),
        "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BOOL"]),
        "shape": st.lists(st.integers(min_value=-2, max_value=70), min_size=0, max_size=3),
        "data": st.one_of(
            st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=140),
            st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=140),
            st.lists(st.one_of(st.booleans(), st.text(max_size=2), st.none()), max_size=70),
            st.lists(st.lists(st.floats(min_value=-1e3, max_value=1e3), max_size=70), max_size=3),
        ),
    }
)


@given(
    tensors=st.lists(near_valid_tensor, min_size=1, max_size=2),
    outputs=st.sampled_from([None, [], [{"name": "label"}], [{"name": "x"}]]),
)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_near_valid_infer_bodies_never_get_a_server_error(
    tensors: list[dict[str, Any]], outputs: Any
) -> None:
    document: dict[str, Any] = {"inputs": tensors}
    if outputs is not None:
        document["outputs"] = outputs
    response = client.post(f"/v2/models/{DEFAULT_MODEL}/infer", content=json.dumps(document))
    assert response.status_code < 500, response.text
    assert response.status_code == 200 or "error" in response.json()


@pytest.fixture(scope="module")
def live_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The same schema, fetched from a real replica process on the default (built-in) HTTP server."""
    with replica_process(
        tmp_path_factory.mktemp("fuzz"), extra_args=["--max-body-bytes", "65536"]
    ) as replica:
        replica.wait_ready()
        yield schemathesis.openapi.from_url(f"{replica.url}/openapi.json")


@pytest.mark.slow
def test_no_server_errors_through_the_default_http_server(live_schema: Any) -> None:
    @given(data=st.data())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(operation: Any, data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        if "name" in (case.path_parameters or {}) and data.draw(st.booleans()):
            case.path_parameters = {"name": DEFAULT_MODEL}
        case.call_and_validate(checks=[not_a_server_error])

    for result in live_schema.get_all_operations():
        operation = result.ok()
        fuzz(operation)
