"""Same random_state, separate processes: are maps, masks, scores and model files identical?

Fits ``UFlowDetector`` with Lite0 at 128x128 on the good training images of
``hazelnut_toy`` (or on ``make_defects`` images when the data folder is
absent) in two fresh processes and compares their outputs on the test images
bit for bit: the flow's weights, the tensors of the model file, the anomaly
maps, the log10 NFA maps, the masks and the scores. Two fits: the defaults
(cross-fitted), and one with the eight copies and a single split.

``--against FOLDER`` runs the second process on another version of the code
(``FOLDER`` holds its ``sklearn_uflow``, e.g. a ``git worktree`` of an
earlier commit): a refactoring must leave every output bit-identical. Without
it, the table goes into ``docs/benchmarks/scaling.rst``.

Usage: ``python benchmarks/bench_determinism.py [--against FOLDER]``
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _report import data_dir, write_table

RUN = """
import sys, tempfile, numpy as np
from safetensors.numpy import load_file
from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
from sklearn_uflow.datasets import load_anomaly_folder, make_defects
out, folder, setting = sys.argv[1:4]
if folder:
    data = load_anomaly_folder(folder, image_size=128)
    train, test = data.train_images, data.test_images
else:
    X, y, _ = make_defects(n_samples=60, image_size=128, random_state=0)
    train, test = X[y == 0], X
params = {"copies": dict(augmentation="eight", cv=None, max_epochs=4)}.get(setting, {})
d = UFlowDetector(CNNFeatureTransformer(input_size=128), random_state=0, device="cpu", **params).fit(train)
weights = np.concatenate([p.numpy().ravel() for p in d.flow_.state_dict().values()])
with tempfile.TemporaryDirectory() as tmp:
    d.save(tmp + "/model.uflow")
    stored = load_file(tmp + "/model.uflow")
model_file = np.concatenate([stored[k].ravel().view(np.uint8) for k in sorted(stored)])
maps, log_nfa = d.maps_and_log_nfa(test)
np.savez(out, weights=weights, model_file=model_file, maps=maps, log_nfa=log_nfa, masks=d.predict_masks(test),
         scores=d.score_samples(test))
"""
SETTINGS = ("defaults", "copies")
OUTPUTS = ("weights", "model_file", "maps", "log_nfa", "masks", "scores")


def _run(path, source, setting, code=None):
    env = dict(os.environ)
    if code is not None:  # another version of the library, first on the path
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-c", RUN, str(path), source, setting], check=True, capture_output=True,
                   env=env, cwd=code or None)
    return np.load(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", metavar="FOLDER", help="compare with the sklearn_uflow in FOLDER")
    args = parser.parse_args()
    folder = data_dir() / "hazelnut_toy/hazelnut_toy"
    source = str(folder) if folder.is_dir() else ""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in SETTINGS:
            first = _run(Path(tmp) / f"{setting}0.npz", source, setting)
            second = _run(Path(tmp) / f"{setting}1.npz", source, setting, args.against)
            for key in OUTPUTS:
                a, b = first[key], second[key]
                same = a.shape == b.shape and np.array_equal(a, b)
                largest = np.max(np.abs(a.astype(float) - b.astype(float))) if a.shape == b.shape else np.inf
                rows.append([setting, key, a.size, "yes" if same else "no", f"{largest:.3g}"])
    header = ["fit", "output", "values", "bit-identical", "largest difference"]
    if args.against:
        for row in [header, *rows]:
            print(" | ".join(map(str, row)))
        sys.exit(0 if all(row[3] == "yes" for row in rows) else 1)
    write_table("bench_determinism", "Determinism", header, rows,
                notes=f"Two fits of each setting with ``random_state=0`` in separate processes on "
                      f"{'hazelnut_toy' if source else 'make_defects images'} (128×128, Lite0, CPU), compared on "
                      "the test images; ``copies``: ``augmentation='eight', cv=None, max_epochs=4``.")


if __name__ == "__main__":
    main()
