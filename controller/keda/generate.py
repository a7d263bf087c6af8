"""Regenerate the Python modules of ``externalscaler.proto``: ``python -m controller.keda.generate`` (needs
grpcio-tools, the ``test`` extra). ``tests/test_keda_scaler.py`` checks that the committed modules match it."""

from __future__ import annotations

from pathlib import Path

from prewarm import protogen

HERE = Path(__file__).resolve().parent
PROTO = HERE / "externalscaler.proto"
MODULES = protogen.modules(PROTO)


def generate(out_dir: Path) -> dict[str, str]:
    return protogen.generate(PROTO, out_dir)


if __name__ == "__main__":
    protogen.write(PROTO)
