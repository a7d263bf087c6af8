"""V2 request validation: every bad input gets a 4xx naming the input and what was expected."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from inference.model import TensorSpec
from inference.protocol import (
    InvalidRequestError,
    encode_binary_request,
    encode_infer_response,
    parse_infer_request,
)

INPUTS = (TensorSpec("input", "FP32", (-1, 64), np.dtype(np.float32)),)
OUTPUTS = (
    TensorSpec("label", "INT64", (-1,), np.dtype(np.int64)),
    TensorSpec("probabilities", "FP32", (-1, 10), np.dtype(np.float32)),
)


def body(**tensor: object) -> bytes:
    entry = {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64, **tensor}
    return orjson.dumps({"inputs": [entry]})


def error_of(raw: bytes) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        parse_infer_request(raw, INPUTS, OUTPUTS)
    return caught.value


def test_valid_request_gives_float32_array_of_declared_shape() -> None:
    request = parse_infer_request(body(shape=[2, 64], data=[1] * 128), INPUTS, OUTPUTS)
    assert request.inputs["input"].dtype == np.float32
    assert request.inputs["input"].shape == (2, 64)
    assert request.rows == 2


def test_nested_data_is_accepted_row_major() -> None:
    nested = [[float(i) for i in range(64)], [float(64 + i) for i in range(64)]]
    request = parse_infer_request(body(shape=[2, 64], data=nested), INPUTS, OUTPUTS)
    assert request.inputs["input"][1, 0] == 64.0


def test_body_that_is_not_json_is_rejected() -> None:
    error = error_of(b"{not json")
    assert error.status == 400 and "not valid JSON" in str(error)


def test_json_that_is_not_an_object_is_rejected() -> None:
    assert "JSON object" in str(error_of(b"[1, 2]"))


def test_missing_inputs_is_rejected() -> None:
    assert "'inputs'" in str(error_of(orjson.dumps({"inputs": []})))


def test_unknown_input_names_it_and_the_expected_ones() -> None:
    message = str(error_of(body(name="pixels")))
    assert "'pixels'" in message and "input" in message


def test_extra_input_is_rejected() -> None:
    entry = {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}
    extra = {**entry, "name": "extra"}
    assert "'extra'" in str(error_of(orjson.dumps({"inputs": [entry, extra]})))


def test_duplicate_input_is_rejected() -> None:
    entry = {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}
    assert "twice" in str(error_of(orjson.dumps({"inputs": [entry, entry]})))


def test_missing_input_is_rejected() -> None:
    two_inputs = (*INPUTS, TensorSpec("mask", "BOOL", (-1,), np.dtype(np.bool_)))
    with pytest.raises(InvalidRequestError, match=r"missing input.*mask"):
        parse_infer_request(body(), two_inputs, OUTPUTS)


def test_wrong_datatype_names_the_expected_one() -> None:
    message = str(error_of(body(datatype="INT64")))
    assert "'input'" in message and "FP32" in message and "INT64" in message


def test_wrong_shape_names_the_expected_one() -> None:
    message = str(error_of(body(shape=[1, 63], data=[0.5] * 63)))
    assert "'input'" in message and "[-1, 64]" in message


def test_negative_or_non_integer_dimension_is_rejected() -> None:
    assert "non-negative integers" in str(error_of(body(shape=[1.5, 64])))
    assert "non-negative integers" in str(error_of(body(shape=[-1, 64])))


def test_data_length_must_match_shape() -> None:
    message = str(error_of(body(shape=[2, 64], data=[0.5] * 64)))
    assert "64 values" in message and "128" in message


def test_empty_tensor_is_rejected() -> None:
    assert "no values" in str(error_of(body(shape=[0, 64], data=[])))


def test_strings_in_data_are_rejected() -> None:
    assert "only numbers" in str(error_of(body(data=["0.5"] * 64)))


def test_ragged_nested_data_is_rejected() -> None:
    assert "ragged" in str(error_of(body(data=[[0.5] * 64, [0.5]])))


def test_nan_sent_by_pythons_json_module_is_rejected_naming_the_input() -> None:
    raw = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [float("nan")] * 64}]}
    )
    message = str(error_of(raw.encode()))
    assert "'input'" in message and "finite" in message


def test_values_overflowing_float32_are_rejected() -> None:
    assert "finite" in str(error_of(body(data=[1e39] * 64)))


def test_unknown_requested_output_is_rejected() -> None:
    raw = orjson.loads(body())
    raw["outputs"] = [{"name": "logits"}]
    assert "'logits'" in str(error_of(orjson.dumps(raw)))


def test_response_lists_requested_outputs_flattened() -> None:
    results = {"label": np.array([3, 4]), "probabilities": np.ones((2, 10), dtype=np.float32)}
    body, json_length = encode_infer_response("m", "abc", results, OUTPUTS, ["probabilities"])
    assert json_length is None
    response = orjson.loads(body)
    assert response["id"] == "abc"
    assert [tensor["name"] for tensor in response["outputs"]] == ["probabilities"]
    assert response["outputs"][0]["shape"] == [2, 10] and len(response["outputs"][0]["data"]) == 20


def binary_request(array: np.ndarray, datatype: str = "FP32") -> tuple[bytes, int]:
    return encode_binary_request({"input": array}, {"input": datatype})


def test_binary_data_request_decodes_to_the_same_array() -> None:
    array = np.arange(128, dtype=np.float32).reshape(2, 64) / 7
    raw, header_length = binary_request(array)
    request = parse_infer_request(raw, INPUTS, OUTPUTS, header_length)
    np.testing.assert_array_equal(request.inputs["input"], array)


def test_binary_data_size_must_match_the_shape() -> None:
    raw, header_length = binary_request(np.zeros((1, 64), dtype=np.float32))
    document = orjson.loads(raw[:header_length])
    document["inputs"][0]["shape"] = [2, 64]
    header = orjson.dumps(document)
    with pytest.raises(InvalidRequestError, match="needs 512 bytes"):
        parse_infer_request(header + raw[header_length:], INPUTS, OUTPUTS, len(header))


def test_binary_data_without_the_length_header_is_rejected() -> None:
    raw, header_length = binary_request(np.zeros((1, 64), dtype=np.float32))
    with pytest.raises(InvalidRequestError, match="Inference-Header-Content-Length"):
        parse_infer_request(raw[:header_length], INPUTS, OUTPUTS)


def test_truncated_binary_data_is_rejected() -> None:
    raw, header_length = binary_request(np.zeros((1, 64), dtype=np.float32))
    with pytest.raises(InvalidRequestError, match="past the end"):
        parse_infer_request(raw[:-4], INPUTS, OUTPUTS, header_length)


def test_trailing_binary_bytes_are_rejected() -> None:
    raw, header_length = binary_request(np.zeros((1, 64), dtype=np.float32))
    with pytest.raises(InvalidRequestError, match="belong to no input"):
        parse_infer_request(raw + b"\0\0\0\0", INPUTS, OUTPUTS, header_length)


def test_binary_nan_is_rejected() -> None:
    raw, header_length = binary_request(np.full((1, 64), np.nan, dtype=np.float32))
    with pytest.raises(InvalidRequestError, match="finite"):
        parse_infer_request(raw, INPUTS, OUTPUTS, header_length)


def test_a_shape_seen_before_does_not_let_booleans_or_floats_pass_as_dimensions() -> None:
    parse_infer_request(body(shape=[1, 64]), INPUTS, OUTPUTS)
    assert "non-negative integers" in str(error_of(body(shape=[True, 64])))
    assert "non-negative integers" in str(error_of(body(shape=[1.0, 64])))
