"""Load one ONNX model with onnxruntime, describe its tensors in V2 terms, warm it up and run it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# ONNX tensor element type (as onnxruntime names it) -> (Open Inference Protocol datatype, numpy dtype)
ONNX_TO_V2: dict[str, tuple[str, np.dtype[Any]]] = {
    "tensor(bool)": ("BOOL", np.dtype(np.bool_)),
    "tensor(uint8)": ("UINT8", np.dtype(np.uint8)),
    "tensor(uint16)": ("UINT16", np.dtype(np.uint16)),
    "tensor(uint32)": ("UINT32", np.dtype(np.uint32)),
    "tensor(uint64)": ("UINT64", np.dtype(np.uint64)),
    "tensor(int8)": ("INT8", np.dtype(np.int8)),
    "tensor(int16)": ("INT16", np.dtype(np.int16)),
    "tensor(int32)": ("INT32", np.dtype(np.int32)),
    "tensor(int64)": ("INT64", np.dtype(np.int64)),
    "tensor(float16)": ("FP16", np.dtype(np.float16)),
    "tensor(float)": ("FP32", np.dtype(np.float32)),
    "tensor(double)": ("FP64", np.dtype(np.float64)),
}


class ModelNotFoundError(LookupError):
    """No ``<repo>/<name>/model.onnx`` exists."""


class UnsupportedModelError(ValueError):
    """The model has a tensor type this server cannot carry over JSON (e.g. strings)."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: V2 datatype, shape with -1 for dynamic dimensions, numpy dtype."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    def metadata(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class LoadedModel:
    """An onnxruntime session with its tensor specs; ``batchable`` when every tensor's first dimension is dynamic."""

    name: str
    path: Path
    session: Any  # onnxruntime.InferenceSession
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    load_s: float

    @property
    def batchable(self) -> bool:
        return all(spec.shape and spec.shape[0] == -1 for spec in (*self.inputs, *self.outputs))

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One synchronous ``session.run`` returning every output by name."""
        values = self.session.run(self.output_names, inputs)
        return dict(zip(self.output_names, values, strict=True))


def model_path(model_repo: Path, name: str) -> Path:
    """``<repo>/<name>/model.onnx``; raises ModelNotFoundError with the names that do exist."""
    path = model_repo / name / "model.onnx"
    if not path.is_file():
        available = (
            sorted(p.parent.name for p in model_repo.glob("*/model.onnx")) if model_repo.is_dir() else []
        )
        raise ModelNotFoundError(
            f"no model {name!r} in {model_repo} (available: {', '.join(available) or 'none'})"
        )
    return path


def _spec(node: Any) -> TensorSpec:
    if node.type not in ONNX_TO_V2:
        raise UnsupportedModelError(f"tensor {node.name!r} has type {node.type}, which is not supported")
    datatype, dtype = ONNX_TO_V2[node.type]
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in node.shape)
    return TensorSpec(node.name, datatype, shape, dtype)


def _configured_shapes(config_path: Path) -> dict[str, list[int]]:
    """Optional ``config.json`` beside the model: ``{"inputs": {"x": {"shape": [-1, 3, 48, 192]}}}`` pins
    dimensions the ONNX file leaves dynamic (used for validation, metadata and warm-up)."""
    if not config_path.is_file():
        return {}
    document = json.loads(config_path.read_text())
    return {name: list(entry["shape"]) for name, entry in document.get("inputs", {}).items()}


def _with_shape(spec: TensorSpec, shape: list[int] | None) -> TensorSpec:
    if shape is None:
        return spec
    compatible = len(shape) == len(spec.shape) and all(
        declared < 0 or declared == pinned for declared, pinned in zip(spec.shape, shape, strict=True)
    )
    if not compatible:
        raise UnsupportedModelError(
            f"config.json shape {shape} for {spec.name!r} contradicts the model's {spec.shape}"
        )
    return TensorSpec(spec.name, spec.datatype, tuple(shape), spec.dtype)


def load_model(model_repo: Path, name: str, intra_op_threads: int = 1) -> LoadedModel:
    """Create the onnxruntime session (CPU, no thread spinning so worker processes share cores fairly)."""
    import onnxruntime as ort

    path = model_path(model_repo, name)
    started = time.perf_counter()
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    shapes = _configured_shapes(path.parent / "config.json")
    inputs = tuple(_with_shape(_spec(node), shapes.get(node.name)) for node in session.get_inputs())
    outputs = tuple(_spec(node) for node in session.get_outputs())
    load_s = time.perf_counter() - started
    logger.info("loaded model %s from %s in %.3f s", name, path, load_s)
    return LoadedModel(name, path, session, inputs, outputs, load_s)


def example_inputs(model: LoadedModel, batch_size: int) -> dict[str, np.ndarray]:
    """Deterministic inputs of the model's shapes; dynamic dimensions are ``batch_size`` first, 1 elsewhere."""
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for spec in model.inputs:
        shape = [dim if dim >= 0 else (batch_size if i == 0 else 1) for i, dim in enumerate(spec.shape)]
        if spec.dtype.kind == "f":
            arrays[spec.name] = rng.random(shape).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            arrays[spec.name] = rng.integers(0, 2, shape).astype(spec.dtype)
        else:
            arrays[spec.name] = rng.integers(0, 8, shape).astype(spec.dtype)
    return arrays


def warm_up(model: LoadedModel, batch_sizes: Sequence[int], rounds: int) -> float:
    """Run ``rounds`` inferences at each batch size the server will use; return the seconds spent."""
    started = time.perf_counter()
    sizes = sorted(set(batch_sizes)) if model.batchable else [1]
    for size in sizes:
        example = example_inputs(model, size)
        for _ in range(rounds):
            model.run(example)
    warmup_s = time.perf_counter() - started
    logger.info("warmed up model %s at batch sizes %s x %d in %.3f s", model.name, sizes, rounds, warmup_s)
    return warmup_s
