"""KServe's ModelServer serving the same ONNX model, as the replica benchmark's production baseline.

    python -m benchmarks.replica_kserve --port PORT --model-path models/onnx/digits_mlp/model.onnx

Run with an interpreter that has ``kserve`` and ``onnxruntime`` (KServe pins its own FastAPI, uvicorn and protobuf,
so the benchmark runs it from a separate virtualenv: ``PREWARM_KSERVE_PYTHON=/path/to/venv/bin/python``). The model
is a plain ``kserve.Model`` whose ``predict`` turns the V2 request's tensors into numpy arrays, runs one onnxruntime
session (one intra-op thread, like the other servers) and returns the outputs: what KServe's documentation shows for
a custom predictor. KServe serves ``/v2/models/NAME/infer`` and ``/v2/health/ready`` itself.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from typing import Any


def build_model(name: str, model_path: str) -> Any:
    """A ready ``kserve.Model`` named ``name`` running the ONNX file at ``model_path``."""
    import onnxruntime as ort
    from kserve import InferOutput, InferRequest, InferResponse, Model
    from kserve.utils.numpy_codec import from_np_dtype

    class OnnxModel(Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(name)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
            self.output_names = [output.name for output in self.session.get_outputs()]
            self.ready = True

        async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
            feeds = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
            results = self.session.run(self.output_names, feeds)
            outputs = []
            for output_name, result in zip(self.output_names, results, strict=True):
                output = InferOutput(
                    name=output_name, shape=list(result.shape), datatype=from_np_dtype(result.dtype)
                )
                output.set_data_from_numpy(result, binary_data=False)
                outputs.append(output)
            response_id = payload.id or str(uuid.uuid4())  # as KServe's own predictors do
            return InferResponse(model_name=name, infer_outputs=outputs, response_id=response_id)

    return OnnxModel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-name", default="digits_mlp")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # kserve parses the command line itself at import time
    from kserve import ModelServer

    server = ModelServer(
        http_port=args.port, workers=args.workers, enable_grpc=False, enable_latency_logging=False
    )
    # KServe logs two trace lines and an access line per request by default; the other servers log none, so
    # neither does this one (its logging is configured by the constructor, hence after it).
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([build_model(args.model_name, args.model_path)])


if __name__ == "__main__":
    main()
