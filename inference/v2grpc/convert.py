"""V2 gRPC messages to validated arrays and back, with the same checks (and messages) as the JSON protocol."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from inference.model import LoadedModel, TensorSpec
from inference.protocol import (
    InferRequest,
    InvalidRequestError,
    array_from_bytes,
    check_finite,
    check_output_names,
    check_tensor,
    little_endian_bytes,
)
from inference.v2grpc import grpc_predict_v2_pb2 as pb

# The InferTensorContents field that carries each datatype; FP16 has none (raw contents only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip
_ALL_FIELDS = sorted(set(CONTENTS_FIELD.values()))


def parse_grpc_request(request: pb.ModelInferRequest, model: LoadedModel) -> InferRequest:
    """Validate a ModelInferRequest against the model; raise InvalidRequestError naming the input at fault."""
    inputs = request.inputs
    raw = request.raw_input_contents
    if not inputs:
        raise InvalidRequestError("'inputs' must be a non-empty list of tensors")
    if raw and len(raw) != len(inputs):
        raise InvalidRequestError(
            f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs; send one per input, in order"
        )
    specs = {spec.name: spec for spec in model.inputs}
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(inputs):
        spec = specs.get(tensor.name)
        if spec is None:
            raise InvalidRequestError(f"unexpected input {tensor.name!r}; the model takes {sorted(specs)}")
        if tensor.name in arrays:
            raise InvalidRequestError(f"input {tensor.name!r} is given twice")
        shape = check_tensor(tensor.datatype, list(tensor.shape), spec)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidRequestError(
                    f"input {spec.name!r}: has contents although the request uses raw_input_contents"
                )
            expected = math.prod(shape) * spec.dtype.itemsize
            if len(raw[index]) != expected:
                raise InvalidRequestError(
                    f"input {spec.name!r}: raw_input_contents[{index}] has {len(raw[index])} bytes, "
                    f"shape {shape} of {spec.datatype} needs {expected}"
                )
            arrays[spec.name] = array_from_bytes(raw[index], spec, shape)
        else:
            arrays[spec.name] = _typed(tensor.contents, spec, shape)
    missing = [name for name in specs if name not in arrays]
    if missing:
        raise InvalidRequestError(f"missing input(s) {missing}; the model takes {sorted(specs)}")
    wanted = check_output_names([output.name for output in request.outputs], model.outputs) or None
    return InferRequest(request.id or None, arrays, wanted)


def _typed(contents: pb.InferTensorContents, spec: TensorSpec, shape: list[int]) -> np.ndarray:
    field = CONTENTS_FIELD.get(spec.datatype)
    if field is None:
        raise InvalidRequestError(f"input {spec.name!r}: {spec.datatype} travels only in raw_input_contents")
    others = [name for name in _ALL_FIELDS if name != field and len(getattr(contents, name))]
    if others:
        raise InvalidRequestError(
            f"input {spec.name!r}: datatype {spec.datatype} takes its values in contents.{field}, got {others}"
        )
    values = getattr(contents, field)
    expected = math.prod(shape)
    if len(values) != expected:
        raise InvalidRequestError(
            f"input {spec.name!r}: contents.{field} has {len(values)} values, shape {shape} needs {expected}"
        )
    if spec.dtype.kind in "iu":
        wide = np.array(values, dtype=np.int64 if spec.dtype.kind == "i" else np.uint64)
        info = np.iinfo(spec.dtype)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidRequestError(f"input {spec.name!r}: values out of range for {spec.datatype}")
        return wide.astype(spec.dtype).reshape(shape)
    return check_finite(np.array(values, dtype=spec.dtype).reshape(shape), spec)


def wants_typed_outputs(request: pb.ModelInferRequest, model: LoadedModel) -> bool:
    """Typed contents come back to a request that sent typed contents, if every output has a typed field."""
    return not request.raw_input_contents and all(spec.datatype in CONTENTS_FIELD for spec in model.outputs)


def encode_grpc_response(
    model: LoadedModel, request: InferRequest, results: Mapping[str, np.ndarray], typed: bool
) -> pb.ModelInferResponse:
    """The ModelInferResponse: raw_output_contents (as Triton answers), or typed contents when ``typed``."""
    datatypes = {spec.name: spec.datatype for spec in model.outputs}
    response = pb.ModelInferResponse(model_name=model.name, model_version="1", id=request.id or "")
    for name in request.outputs or [spec.name for spec in model.outputs]:
        array = results[name]
        output = response.outputs.add(name=name, datatype=datatypes[name], shape=array.shape)
        if typed:
            getattr(output.contents, CONTENTS_FIELD[datatypes[name]]).extend(array.ravel().tolist())
        else:
            response.raw_output_contents.append(little_endian_bytes(array))
    return response


def model_metadata(model: LoadedModel) -> pb.ModelMetadataResponse:
    def tensor(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
        return pb.ModelMetadataResponse.TensorMetadata(
            name=spec.name, datatype=spec.datatype, shape=spec.shape
        )

    return pb.ModelMetadataResponse(
        name=model.name,
        versions=["1"],
        platform="onnxruntime_onnx",
        inputs=[tensor(spec) for spec in model.inputs],
        outputs=[tensor(spec) for spec in model.outputs],
    )
