"""Generating the Python modules of a project .proto with grpcio-tools (a development step: the generated modules
are committed, and a test checks they are current). Shared by inference/v2grpc and controller/keda.

``private_pool`` registers the messages in a descriptor pool of their own instead of protobuf's default pool, for
a proto whose package and message names another installed library also defines (Triton's client defines
``inference.*``): two files defining one symbol cannot share a pool, so a process could not import both.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
_OWN_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def modules(proto: Path) -> tuple[str, str, str]:
    """The file names protoc writes for ``proto``: the messages, their type stubs, the gRPC stubs."""
    stem = proto.stem
    return f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"


def generate(proto: Path, out_dir: Path, *, private_pool: bool = False) -> dict[str, str]:
    """Run protoc on ``proto`` (a file under the repository) into ``out_dir``; {module file name: text}."""
    from grpc_tools import protoc

    relative = proto.resolve().relative_to(ROOT)
    code = protoc.main(
        ["protoc", f"-I{ROOT}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
         str(relative)]
    )  # fmt: skip
    if code != 0:
        raise RuntimeError(f"protoc failed with {code} on {relative}")
    names = modules(proto)
    texts = {name: (out_dir / relative.parent / name).read_text() for name in names}
    if private_pool:
        if texts[names[0]].count(_DEFAULT_POOL) != 1:
            raise RuntimeError("protoc's output changed shape: cannot point it at a private descriptor pool")
        texts[names[0]] = texts[names[0]].replace(_DEFAULT_POOL, _OWN_POOL)
    return texts


def write(proto: Path, *, private_pool: bool = False) -> None:
    """Regenerate the modules next to ``proto``."""
    with tempfile.TemporaryDirectory() as scratch:
        for name, text in generate(proto, Path(scratch), private_pool=private_pool).items():
            (proto.parent / name).write_text(text)
            print(f"wrote {(proto.parent / name).relative_to(ROOT)}", file=sys.stderr)
