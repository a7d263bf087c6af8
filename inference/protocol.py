"""Open Inference Protocol (KServe V2) JSON: parse and validate an infer request, encode the response.

Pure functions over bytes and numpy arrays, no web framework: the hot path builds no pydantic models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from inference.model import TensorSpec

# numpy kinds accepted for each V2 datatype family (ints may feed float inputs; floats never feed int inputs)
_ACCEPTED_KINDS = {"f": "iuf", "i": "iu", "u": "iu", "b": "b"}


class InvalidRequestError(ValueError):
    """The request cannot be served as sent; ``status`` is the HTTP status, the message says what to fix."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InferRequest:
    """A validated request: arrays by input name (model dtypes and shapes), the outputs to return and which of them
    go back as raw bytes after the JSON (the binary tensor extension)."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: tuple[str, ...] | None
    binary_outputs: frozenset[str] = frozenset()

    @property
    def rows(self) -> int:
        """Size of the first (batch) dimension, for batching."""
        first = next(iter(self.inputs.values()))
        return int(first.shape[0]) if first.ndim else 1


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        # Python's json module writes NaN/Infinity; parse those leniently so the message can name the input.
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequestError(f"body is not valid JSON: {error}") from None


def _shape_matches(shape: Sequence[int], expected: Sequence[int]) -> bool:
    return len(shape) == len(expected) and all(e < 0 or s == e for s, e in zip(shape, expected, strict=True))


class _BinaryReader:
    """The bytes after the JSON header of a binary-data request (KServe/Triton binary tensor extension)."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int, name: str) -> memoryview:
        if self.offset + size > len(self.data):
            raise InvalidRequestError(
                f"input {name!r}: binary_data_size {size} runs past the end of the body "
                f"({len(self.data) - self.offset} binary bytes left)"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk


_VALID_SHAPES: set[tuple[Any, ...]] = set()  # (input name, model shape, *request shape) already validated


def check_tensor(datatype: Any, shape: Any, spec: TensorSpec) -> list[int]:
    """The input's shape if its datatype and shape fit the model's ``spec``; else InvalidRequestError naming it."""
    name = spec.name
    if datatype != spec.datatype:
        raise InvalidRequestError(
            f"input {name!r}: datatype {datatype!r} given, the model expects {spec.datatype!r}"
        )
    try:
        # shapes seen before skip the checks below; the types are in the key since True == 1 and 1.0 == 1
        key = (spec.name, spec.shape, tuple(map(type, shape)), *shape)
    except TypeError:
        key = None
    if key is not None and key in _VALID_SHAPES:
        return shape
    if (
        not isinstance(shape, list)
        or not all(type(dim) is int and dim >= 0 for dim in shape)  # bool is not a dimension
    ):
        raise InvalidRequestError(
            f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}"
        )
    if not _shape_matches(shape, spec.shape):
        raise InvalidRequestError(
            f"input {name!r}: shape {shape} does not match the model's {list(spec.shape)} (-1 = any size)"
        )
    if math.prod(shape) == 0:
        raise InvalidRequestError(f"input {name!r}: shape {shape} holds no values; send at least one row")
    if key is not None:
        if len(_VALID_SHAPES) > 4096:
            _VALID_SHAPES.clear()
        _VALID_SHAPES.add(key)
    return shape


def check_finite(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidRequestError(
            f"input {spec.name!r}: values must be finite {spec.datatype} numbers (NaN, infinity or out of range given)"
        )
    return array


def _binary_tensor(
    entry: Any, spec: TensorSpec, shape: list[int], binary: _BinaryReader | None
) -> np.ndarray:
    name = spec.name
    size = entry["parameters"]["binary_data_size"]
    if binary is None:
        raise InvalidRequestError(
            f"input {name!r}: binary_data_size given but the request has no Inference-Header-Content-Length header"
        )
    expected = math.prod(shape) * spec.dtype.itemsize
    if type(size) is not int or size != expected:
        raise InvalidRequestError(
            f"input {name!r}: binary_data_size {size!r}, shape {shape} of {spec.datatype} needs {expected} bytes"
        )
    return array_from_bytes(binary.take(size, name), spec, shape)


def array_from_bytes(data: bytes | memoryview, spec: TensorSpec, shape: list[int]) -> np.ndarray:
    """A tensor from its row-major little-endian bytes (binary extension, gRPC raw contents), checked finite."""
    raw = np.frombuffer(data, dtype=spec.dtype.newbyteorder("<")).reshape(shape)
    return check_finite(raw.astype(spec.dtype, copy=True), spec)  # own, aligned, native-order copy


def _tensor(entry: Any, spec: TensorSpec, binary: _BinaryReader | None = None) -> np.ndarray:
    name = spec.name
    shape = check_tensor(entry.get("datatype"), entry.get("shape"), spec)
    parameters = entry.get("parameters")
    if isinstance(parameters, dict) and "binary_data_size" in parameters:
        return _binary_tensor(entry, spec, shape, binary)
    data = entry.get("data")
    if not isinstance(data, list):
        raise InvalidRequestError(f"input {name!r}: 'data' must be a list of numbers (row-major)")
    try:
        raw = np.asarray(data)
    except ValueError:
        raise InvalidRequestError(f"input {name!r}: 'data' is a ragged nested list") from None
    if raw.dtype.kind not in _ACCEPTED_KINDS[spec.dtype.kind] and raw.size:
        kind = "booleans" if spec.dtype.kind == "b" else "integers" if spec.dtype.kind in "iu" else "numbers"
        raise InvalidRequestError(
            f"input {name!r}: 'data' must hold only {kind} for datatype {spec.datatype}"
        )
    expected_size = math.prod(shape)
    if raw.size != expected_size:
        raise InvalidRequestError(
            f"input {name!r}: 'data' has {raw.size} values, shape {shape} needs {expected_size}"
        )
    if spec.dtype.kind in "iu":
        info = np.iinfo(spec.dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise InvalidRequestError(f"input {name!r}: values out of range for {spec.datatype}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes inf, rejected just below
        array = raw.astype(spec.dtype, copy=False).reshape(shape)
    return check_finite(array, spec)


def parse_infer_request(
    body: bytes,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    header_length: int | None = None,
) -> InferRequest:
    """Validate a V2 infer request against the model's tensors; raise InvalidRequestError naming the problem.

    ``header_length`` (from the ``Inference-Header-Content-Length`` header) splits a binary-data request into its
    JSON header and the raw little-endian tensor bytes that follow it, in input order.
    """
    binary: _BinaryReader | None = None
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise InvalidRequestError(
                f"Inference-Header-Content-Length {header_length} does not fit a body of {len(body)} bytes"
            )
        binary = _BinaryReader(memoryview(body)[header_length:])
        body = body[:header_length]
    document = _loads(body)
    if not isinstance(document, dict):
        raise InvalidRequestError("body must be a JSON object with an 'inputs' list")
    entries = document.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise InvalidRequestError("'inputs' must be a non-empty list of tensors")
    specs = {spec.name: spec for spec in inputs} if len(inputs) > 1 else {inputs[0].name: inputs[0]}
    arrays: dict[str, np.ndarray] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidRequestError(
                "each item of 'inputs' must be an object with name, shape, datatype, data"
            )
        name = entry.get("name")
        spec = specs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise InvalidRequestError(f"unexpected input {name!r}; the model takes {sorted(specs)}")
        if name in arrays:
            raise InvalidRequestError(f"input {name!r} is given twice")
        arrays[spec.name] = _tensor(entry, spec, binary)
    if binary is not None and binary.offset != len(binary.data):
        raise InvalidRequestError(
            f"{len(binary.data) - binary.offset} binary bytes after the JSON header belong to no input"
        )
    missing = [name for name in specs if name not in arrays]
    if missing:
        raise InvalidRequestError(f"missing input(s) {missing}; the model takes {sorted(specs)}")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequestError("'id' must be a string")
    parameters = document.get("parameters")
    all_binary = _binary_flag(parameters, "binary_data_output", "request") if parameters is not None else False
    requested = document.get("outputs")
    wanted = _requested_outputs(requested, outputs)
    binary_outputs = _binary_outputs(requested, outputs, all_binary) if all_binary or requested else frozenset()
    return InferRequest(request_id, arrays, wanted, binary_outputs)


def _binary_flag(parameters: Any, key: str, where: str) -> bool:
    if not isinstance(parameters, dict):
        raise InvalidRequestError(f"{where} 'parameters' must be an object")
    if "classification" in parameters:
        raise InvalidRequestError(f"{where}: the classification extension is not supported")
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise InvalidRequestError(f"{where} parameter {key!r} must be true or false, got {value!r}")
    return value


def _binary_outputs(requested: Any, outputs: Sequence[TensorSpec], all_binary: bool) -> frozenset[str]:
    """Outputs to return as raw bytes: all with ``binary_data_output``, each as its own ``binary_data`` says."""
    chosen = {spec.name for spec in outputs} if all_binary else set()
    for item in requested or ():
        parameters = item.get("parameters")
        if parameters is None:
            continue
        name = item["name"]
        flag = _binary_flag(parameters, "binary_data", f"output {name!r}")
        if "binary_data" in parameters:
            (chosen.add if flag else chosen.discard)(name)
    return frozenset(chosen)


def _requested_outputs(requested: Any, outputs: Sequence[TensorSpec]) -> tuple[str, ...] | None:
    if requested is None:
        return None
    if not isinstance(requested, list) or not all(isinstance(item, dict) for item in requested):
        raise InvalidRequestError("'outputs' must be a list of objects with a 'name'")
    return check_output_names([item.get("name") for item in requested], outputs)


def check_output_names(names: Sequence[Any], outputs: Sequence[TensorSpec]) -> tuple[str, ...]:
    """The requested output names if the model has them all; else InvalidRequestError naming the unknown ones."""
    known = [spec.name for spec in outputs]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidRequestError(f"unknown output(s) {unknown}; the model has {known}")
    return tuple(names)


def check_batch_dimension(request: InferRequest) -> None:
    """For batching, every input must agree on the first dimension."""
    sizes = {array.shape[0] for array in request.inputs.values()}
    if len(sizes) > 1:
        raise InvalidRequestError(f"inputs disagree on the batch (first) dimension: {sorted(sizes)}")


def encode_infer_response(
    model_name: str,
    request_id: str | None,
    results: Mapping[str, np.ndarray],
    specs: Sequence[TensorSpec],
    wanted: Sequence[str] | None,
    binary: frozenset[str] = frozenset(),
) -> tuple[bytes, int | None]:
    """The V2 response body, and the length of its JSON part when the outputs in ``binary`` follow it as raw bytes.

    JSON arrays go to orjson as numpy (no Python lists), flattened row-major; binary ones as little-endian bytes in
    output order, announced by ``parameters.binary_data_size`` (send ``Inference-Header-Content-Length``).
    """
    names = wanted if wanted is not None else [spec.name for spec in specs]
    datatypes = {spec.name: spec.datatype for spec in specs}
    tensors: list[dict[str, object]] = []
    blobs: list[bytes] = []
    for name in names:
        array = results[name]
        tensor: dict[str, object] = {"name": name, "datatype": datatypes[name], "shape": list(array.shape)}
        if name in binary:
            blob = little_endian_bytes(array)
            blobs.append(blob)
            tensor["parameters"] = {"binary_data_size": len(blob)}
        elif array.dtype == np.float16:
            tensor["data"] = array.ravel().tolist()  # orjson has no float16
        else:
            tensor["data"] = np.ascontiguousarray(array).ravel()
        tensors.append(tensor)
    document: dict[str, object] = {"model_name": model_name, "outputs": tensors}
    if request_id is not None:
        document["id"] = request_id
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join((header, *blobs)), len(header)


def little_endian_bytes(array: np.ndarray) -> bytes:
    """Row-major little-endian bytes of ``array`` (the binary extension's and gRPC raw contents' encoding)."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def error_body(message: str) -> bytes:
    """The V2 error object."""
    return orjson.dumps({"error": message})


def encode_binary_request(
    inputs: Mapping[str, np.ndarray], datatypes: Mapping[str, str]
) -> tuple[bytes, int]:
    """A binary-data infer body (JSON header + raw little-endian tensors) and its JSON header length.

    Send it with the header ``Inference-Header-Content-Length: <length>``.
    """
    tensors, blobs = [], []
    for name, array in inputs.items():
        blob = little_endian_bytes(array)
        tensors.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatypes[name],
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    header = orjson.dumps({"inputs": tensors})
    return header + b"".join(blobs), len(header)
