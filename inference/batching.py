"""Adaptive batching: requests that arrive while the model is busy (or within a bounded wait) run as one batch.

A batch is bounded by ``max_rows`` (sum of the requests' first dimensions; a single larger request still runs
alone) and by ``max_wait_s`` after its first request. Requests whose non-batch dimensions differ are run in
separate groups. Each caller gets exactly the rows of its own request back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

RunFn = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class _Pending:
    inputs: Mapping[str, np.ndarray]
    rows: int
    future: asyncio.Future[dict[str, np.ndarray]] = field(repr=False)

    def signature(self) -> tuple[tuple[str, tuple[int, ...], str], ...]:
        return tuple((name, array.shape[1:], array.dtype.str) for name, array in sorted(self.inputs.items()))


def merge(inputs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate same-signature requests along the first dimension."""
    return {name: np.concatenate([request[name] for request in inputs]) for name in inputs[0]}


def split(outputs: Mapping[str, np.ndarray], rows: list[int]) -> list[dict[str, np.ndarray]]:
    """Cut batched outputs back into per-request outputs, in order."""
    cuts = np.cumsum(rows)[:-1]
    parts = {name: np.split(array, cuts) for name, array in outputs.items()}
    return [{name: parts[name][i] for name in outputs} for i in range(len(rows))]


class Batcher:
    """Queue + one consumer task; ``submit`` awaits the caller's slice of a batched ``run``."""

    def __init__(
        self,
        run: RunFn,
        max_rows: int,
        max_wait_s: float,
        executor: Executor | None = None,
        on_batch: Callable[[int], None] | None = None,
        on_depth_change: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run
        self._max_rows = max(1, max_rows)
        self._max_wait_s = max(0.0, max_wait_s)
        self._executor = executor
        self._on_batch = on_batch
        self._on_depth_change = on_depth_change
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._carry: _Pending | None = None

    @property
    def depth(self) -> int:
        """Requests waiting for a batch."""
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def submit(self, inputs: Mapping[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(inputs, rows, future))
        if self._on_depth_change is not None:
            self._on_depth_change(1)
        return await future

    async def _collect(self) -> list[_Pending]:
        if self._carry is not None:
            first, self._carry = self._carry, None
        else:
            first = await self._queue.get()
        batch, rows = [first], first.rows
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_s
        while rows < self._max_rows:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if rows + item.rows > self._max_rows:
                self._carry = item  # first of the next batch
                break
            batch.append(item)
            rows += item.rows
        return batch

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if self._on_depth_change is not None:
                self._on_depth_change(-len(batch))
            groups: dict[object, list[_Pending]] = {}
            for item in batch:
                groups.setdefault(item.signature(), []).append(item)
            for group in groups.values():
                live = [item for item in group if not item.future.done()]  # caller may have gone away
                if not live:
                    continue
                try:
                    merged = merge([item.inputs for item in live]) if len(live) > 1 else live[0].inputs
                    if self._executor is None:
                        outputs = self._run(merged)
                    else:
                        outputs = await loop.run_in_executor(self._executor, self._run, merged)
                    pieces = split(outputs, [item.rows for item in live]) if len(live) > 1 else [outputs]
                except Exception as error:  # the model failed: every caller of this group gets the error
                    logger.exception("batch of %d requests failed", len(live))
                    for item in live:
                        if not item.future.done():
                            item.future.set_exception(error)
                    continue
                if self._on_batch is not None:
                    self._on_batch(sum(item.rows for item in live))
                for item, piece in zip(live, pieces, strict=True):
                    if not item.future.done():
                        item.future.set_result(piece)
