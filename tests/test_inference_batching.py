"""Adaptive batching: a batched answer equals the unbatched one for every request."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import orjson
import pytest

from inference.app import ReplicaApp
from inference.batching import Batcher, merge, split
from inference.config import ReplicaConfig
from inference.model import LoadedModel, example_inputs, load_model
from inference.testing import DEFAULT_MODEL, DEFAULT_MODEL_REPO, digits_body


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model(DEFAULT_MODEL_REPO, DEFAULT_MODEL)


def requests_of(model: LoadedModel, row_counts: list[int]) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(42)
    return [{"input": rng.random((rows, 64)).astype(np.float32)} for rows in row_counts]


def test_split_undoes_merge() -> None:
    parts = [{"x": np.arange(i * 3, dtype=np.float32).reshape(i, 3)} for i in (1, 2, 3)]
    again = split(merge(parts), [1, 2, 3])
    for before, after in zip(parts, again, strict=True):
        np.testing.assert_array_equal(before["x"], after["x"])


def test_batched_answers_equal_unbatched(model: LoadedModel) -> None:
    row_counts = [1, 3, 1, 2, 5, 1, 1, 4, 2, 1, 1, 1]
    requests = requests_of(model, row_counts)
    expected = [model.run(request) for request in requests]
    batch_sizes: list[int] = []

    async def scenario() -> list[dict[str, np.ndarray]]:
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = Batcher(
                model.run, max_rows=8, max_wait_s=0.05, executor=executor, on_batch=batch_sizes.append
            )
            batcher.start()
            try:
                return await asyncio.gather(
                    *(batcher.submit(request, int(request["input"].shape[0])) for request in requests)
                )
            finally:
                await batcher.stop()

    answers = asyncio.run(scenario())
    assert max(batch_sizes) > 1, "requests were never batched"
    assert max(batch_sizes) <= 8 and sum(batch_sizes) == sum(row_counts)
    for got, want in zip(answers, expected, strict=True):
        np.testing.assert_array_equal(got["label"], want["label"])
        np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=1e-6, atol=1e-7)


def test_batches_group_only_requests_of_equal_non_batch_shape() -> None:
    seen: list[tuple[int, ...]] = []

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(inputs["x"].shape)
        return {"y": inputs["x"] * 2}

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher = Batcher(run, max_rows=16, max_wait_s=0.02)  # type: ignore[arg-type]
        batcher.start()
        try:
            return list(
                await asyncio.gather(
                    batcher.submit({"x": np.ones((1, 3))}, 1),
                    batcher.submit({"x": np.ones((1, 4))}, 1),
                    batcher.submit({"x": np.ones((2, 3))}, 2),
                )
            )
        finally:
            await batcher.stop()

    answers = asyncio.run(scenario())
    assert sorted(seen) == [(1, 4), (3, 3)]
    assert [answer["y"].shape for answer in answers] == [(1, 3), (1, 4), (2, 3)]


def test_model_errors_reach_every_caller_of_the_batch() -> None:
    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise RuntimeError("boom")

    async def scenario() -> list[object]:
        batcher = Batcher(run, max_rows=4, max_wait_s=0.01)  # type: ignore[arg-type]
        batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit({"x": np.ones((1, 1))}, 1) for _ in range(3)), return_exceptions=True
            )
        finally:
            await batcher.stop()

    assert all(isinstance(result, RuntimeError) for result in asyncio.run(scenario()))


def test_replica_with_batching_answers_each_request_as_without(model: LoadedModel) -> None:
    bodies = [digits_body(rows=1 + i % 3, offset=i) for i in range(24)]
    expected = []
    for raw in bodies:
        tensor = orjson.loads(raw)["inputs"][0]
        expected.append(model.run({"input": np.asarray(tensor["data"], np.float32).reshape(tensor["shape"])}))

    async def scenario() -> tuple[list[httpx.Response], str]:
        app = ReplicaApp(
            ReplicaConfig(str(DEFAULT_MODEL_REPO), DEFAULT_MODEL, batch_max_size=16, batch_max_wait_ms=30)
        )
        await app.startup()
        while not app.ready:
            await asyncio.sleep(0.01)
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t"
            ) as client:
                path = f"/v2/models/{DEFAULT_MODEL}/infer"
                responses = await asyncio.gather(*(client.post(path, content=raw) for raw in bodies))
                metrics = (await client.get("/metrics")).text
        finally:
            await app.shutdown()
        return responses, metrics

    responses, metrics = asyncio.run(scenario())
    for response, want in zip(responses, expected, strict=True):
        assert response.status_code == 200
        outputs = {tensor["name"]: tensor["data"] for tensor in response.json()["outputs"]}
        assert outputs["label"] == want["label"].tolist()
        np.testing.assert_allclose(
            outputs["probabilities"], want["probabilities"].ravel(), rtol=1e-6, atol=1e-7
        )
    count_line = next(
        line for line in metrics.splitlines() if line.startswith("prewarm_replica_batch_size_count")
    )
    assert float(count_line.split()[-1]) < len(bodies), "no two requests shared a batch"


def test_example_inputs_follow_the_model_shapes(model: LoadedModel) -> None:
    assert example_inputs(model, 4)["input"].shape == (4, 64)
