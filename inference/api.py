"""The documented (FastAPI) side of a replica: metadata, health, metrics, and the infer route's schema.

The infer route here serves the same ``ReplicaApp.infer_body`` as the raw-ASGI hot path; it answers for other
model names (404) and documents the request and response in the OpenAPI schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

if TYPE_CHECKING:
    from inference.app import ReplicaApp

V2_DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES",
)  # fmt: skip
ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
TENSOR_SCHEMA = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": list(V2_DATATYPES), "example": "FP32"},
        "parameters": {"type": "object"},
        "data": {"type": "array", "description": "row-major values (flat or nested)"},
    },
}
INFER_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": TENSOR_SCHEMA},
        "outputs": {
            "type": "array",
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        },
    },
}
INFER_RESPONSE_SCHEMA = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": TENSOR_SCHEMA},
    },
}


def _error(status: int, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Liveness(BaseModel):
    live: bool


class Readiness(BaseModel):
    ready: bool


def _json(status: int, body: bytes) -> Response:
    return Response(content=body, status_code=status, media_type="application/json")


def build_api(replica: ReplicaApp) -> FastAPI:
    """Routes of the Open Inference Protocol (V2) REST API for one replica."""
    from inference.protocol import error_body

    api = FastAPI(
        title="prewarm replica",
        version="1",
        description="Open Inference Protocol (KServe V2) REST API for one ONNX model.",
    )
    model_name = replica.config.model

    def unknown(name: str) -> Response:
        return _json(404, error_body(f"unknown model {name!r}; this replica serves {model_name!r}"))

    def not_ready() -> Response:
        reason = f"failed to load: {replica.failed}" if replica.failed else "warming up"
        return _json(503, error_body(f"model {model_name!r} is not ready ({reason})"))

    @api.get("/v2", response_model=ServerMetadata, summary="Server metadata")
    async def server_metadata() -> ServerMetadata:
        return ServerMetadata(name="prewarm", version="1", extensions=["binary_tensor_data"])

    @api.get("/v2/health/live", response_model=Liveness, summary="Liveness")
    async def live() -> Liveness:
        return Liveness(live=True)

    @api.get(
        "/v2/health/ready",
        response_model=Readiness,
        responses={503: {"description": "still warming up", "model": Readiness}},
        summary="Readiness: 200 only once the model is loaded and warmed (in every worker)",
    )
    async def health_ready() -> Response:
        ready = replica.replica_ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @api.get(
        "/v2/models/{name}",
        response_model=ModelMetadata,
        responses={404: _error(404, "unknown model"), 503: _error(503, "model not loaded yet")},
        summary="Model metadata",
    )
    async def model_metadata(name: str) -> Response:
        if name != model_name:
            return unknown(name)
        model = replica.model
        if model is None:
            return not_ready()
        metadata = ModelMetadata(
            name=model.name,
            versions=["1"],
            platform="onnxruntime_onnx",
            inputs=[TensorMetadata(**spec.metadata()) for spec in model.inputs],  # type: ignore[arg-type]
            outputs=[TensorMetadata(**spec.metadata()) for spec in model.outputs],  # type: ignore[arg-type]
        )
        return _json(200, metadata.model_dump_json().encode())

    @api.get(
        "/v2/models/{name}/ready",
        response_model=Readiness,
        responses={404: _error(404, "unknown model"), 503: {"description": "warming up", "model": Readiness}},
        summary="Model readiness",
    )
    async def model_ready(name: str) -> Response:
        if name != model_name:
            return unknown(name)
        ready = replica.replica_ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @api.post(
        "/v2/models/{name}/infer",
        summary="Inference (V2 JSON)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": INFER_REQUEST_SCHEMA}},
            },
            "responses": {
                "200": {
                    "description": "outputs",
                    "content": {"application/json": {"schema": INFER_RESPONSE_SCHEMA}},
                },
                "400": _error(400, "invalid request: the message names the input and what was expected"),
                "404": _error(404, "unknown model"),
                "413": _error(413, "body over the size limit"),
                "503": _error(503, "model not ready"),
            },
        },
    )
    async def infer(name: str, request: Request) -> Response:
        if name != model_name:
            return unknown(name)
        # Only reached when the hot path did not match (it matches every POST to this model's infer path).
        header = request.headers.get("inference-header-content-length")
        header_length = int(header) if header is not None and header.isdigit() else None
        status, body, json_length = await replica.infer_body(await request.body(), header_length)
        if json_length is None:
            return _json(status, body)
        headers = {"inference-header-content-length": str(json_length)}
        return Response(content=body, status_code=status, media_type="application/octet-stream", headers=headers)

    @api.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
    async def metrics() -> Response:
        return Response(
            replica.metrics.exposition(replica.replica_ready()),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    return api
