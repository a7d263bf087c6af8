"""Regenerate the default model ``models/onnx/digits_mlp/model.onnx`` reproducibly.

A small MLP (64 -> 64 -> 10, ReLU) trained on scikit-learn's bundled 8x8 digits data (no download), converted
with skl2onnx. Inputs are the 64 pixel intensities scaled to [0, 1] (raw 0..16 divided by 16).

    .venv/bin/python scripts/make_default_model.py [--out models/onnx/digits_mlp]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

logger = logging.getLogger("make_default_model")

SEED = 0
HIDDEN = (64,)


def build(out_dir: Path) -> dict[str, object]:
    """Train, convert and write the model plus its provenance file; return the provenance."""
    import numpy as np
    import onnx
    import skl2onnx
    import sklearn
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=400, random_state=SEED)
    clf.fit(x_train, y_train)
    accuracy = float(clf.score(x_test, y_test))

    onx = to_onnx(
        clf,
        initial_types=[("input", skl2onnx.common.data_types.FloatTensorType([None, 64]))],
        options={id(clf): {"zipmap": False}},
        target_opset=17,
    )
    onx.producer_name = "prewarm/scripts/make_default_model.py"
    for prop_key, prop_value in (
        ("source", "sklearn.datasets.load_digits"),
        ("test_accuracy", f"{accuracy:.4f}"),
    ):
        entry = onx.metadata_props.add()
        entry.key, entry.value = prop_key, prop_value
    data = onx.SerializeToString()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.onnx").write_bytes(data)
    onnx.checker.check_model(onx)

    provenance: dict[str, object] = {
        "name": out_dir.name,
        "task": "8x8 handwritten digit classification (10 classes)",
        "dataset": "scikit-learn bundled 'digits' (sklearn.datasets.load_digits, UCI ML hand-written digits)",
        "preprocessing": "pixel values 0..16 divided by 16 -> float32 in [0, 1], flattened to 64",
        "model": f"sklearn MLPClassifier hidden_layer_sizes={HIDDEN}, relu, adam, random_state={SEED}",
        "split": "75/25 stratified, random_state=0",
        "test_accuracy": round(accuracy, 4),
        "inputs": {"input": "FP32 [-1, 64]"},
        "outputs": {"label": "INT64 [-1]", "probabilities": "FP32 [-1, 10]"},
        "converter": f"skl2onnx {skl2onnx.__version__}, opset 17, zipmap off",
        "scikit_learn": sklearn.__version__,
        "sha256": hashlib.sha256(data).hexdigest(),
        "regenerate": "python scripts/make_default_model.py",
    }
    (out_dir / "source.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default_out = Path(__file__).resolve().parent.parent / "models" / "onnx" / "digits_mlp"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    provenance = build(args.out)
    logger.info(
        "wrote %s (test accuracy %.4f, sha256 %s)",
        args.out,
        provenance["test_accuracy"],
        provenance["sha256"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
