"""Regenerate the Python modules of ``grpc_predict_v2.proto``: ``python -m inference.v2grpc.generate``.

Needs grpcio-tools (the ``test`` extra). The generated ``_pb2`` module registers its messages in a descriptor pool of
its own instead of protobuf's default pool: Triton's client registers the same package and message names
(``inference.ModelInferRequest`` ...) from its own file, and two files defining one symbol cannot share a pool, so a
process (a test, a user's program) could not import both. ``tests/test_v2grpc_generated.py`` checks that the
committed modules match the .proto.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROTO = HERE / "grpc_predict_v2.proto"
MODULES = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")
_DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
_OWN_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def generate(out_dir: Path) -> dict[str, str]:
    """Run protoc on the .proto into ``out_dir``; return {module file name: text} with the pool rewritten."""
    from grpc_tools import protoc

    proto = PROTO.relative_to(ROOT)
    code = protoc.main(
        [
            "protoc",
            f"-I{ROOT}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(proto),
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed with {code}")
    texts = {name: (out_dir / proto.parent / name).read_text() for name in MODULES}
    pb2 = texts[MODULES[0]]
    if pb2.count(_DEFAULT_POOL) != 1:
        raise RuntimeError("protoc's output changed shape: cannot point it at a private descriptor pool")
    texts[MODULES[0]] = pb2.replace(_DEFAULT_POOL, _OWN_POOL)
    return texts


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        for name, text in generate(Path(scratch)).items():
            (HERE / name).write_text(text)
            print(f"wrote {(HERE / name).relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
