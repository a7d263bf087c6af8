"""Baseline servers for the replica benchmark, each run as ``python -m benchmarks.replica_baselines KIND ...``.

- ``trivial``: a raw-ASGI route answering a constant JSON (the load generators' own ceiling);
- ``naive``: plain FastAPI + onnxruntime, ``await request.json()``, one ``session.run`` per request, one worker.
"""

import argparse
import os
from typing import Any


def trivial_app() -> Any:
    body = b'{"ok":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def naive_app(model_path: str) -> Any:
    """What one writes first: FastAPI, request.json(), numpy from lists, tolist() back."""
    import numpy as np
    import onnxruntime as ort
    from fastapi import FastAPI, Request

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    app = FastAPI()

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> dict[str, Any]:
        payload = await request.json()
        feeds = {
            tensor["name"]: np.array(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
            for tensor in payload["inputs"]
        }
        names = [output.name for output in session.get_outputs()]
        results = session.run(names, feeds)
        return {
            "model_name": name,
            "outputs": [
                {"name": n, "shape": list(r.shape), "datatype": "FP32", "data": r.ravel().tolist()}
                for n, r in zip(names, results, strict=True)
            ],
        }

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def naive_from_env() -> Any:
    """Factory for uvicorn workers of the naive baseline."""
    return naive_app(os.environ["_BENCH_MODEL_PATH"])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["trivial", "naive"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-path", default="")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    common: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": args.port,
        "access_log": False,
        "log_level": "warning",
    }
    if args.kind == "trivial":
        uvicorn.run(trivial_app(), **common)
    elif args.workers > 1:
        os.environ["_BENCH_MODEL_PATH"] = args.model_path
        uvicorn.run(
            "benchmarks.replica_baselines:naive_from_env", factory=True, workers=args.workers, **common
        )
    else:
        uvicorn.run(naive_app(args.model_path), **common)


if __name__ == "__main__":
    main()
