"""Regenerate the Python modules of ``grpc_predict_v2.proto``: ``python -m inference.v2grpc.generate``.

Needs grpcio-tools (the ``test`` extra). The messages go to a descriptor pool of their own (prewarm/protogen.py):
Triton's client registers the same ``inference.*`` names from its own file. ``tests/test_v2grpc_proto.py`` checks
that the committed modules match the .proto.
"""

from __future__ import annotations

from pathlib import Path

from prewarm import protogen

HERE = Path(__file__).resolve().parent
PROTO = HERE / "grpc_predict_v2.proto"
MODULES = protogen.modules(PROTO)


def generate(out_dir: Path) -> dict[str, str]:
    return protogen.generate(PROTO, out_dir, private_pool=True)


if __name__ == "__main__":
    protogen.write(PROTO, private_pool=True)
