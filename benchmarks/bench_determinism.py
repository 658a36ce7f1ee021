"""Same random_state, separate processes: are maps, masks and scores identical?

Fits ``UFlowDetector(extractor="efficientnet_lite0", random_state=0)`` on the
good training images of ``hazelnut_toy`` (or on ``make_defects`` images when
the data folder is absent) in two fresh processes and compares their outputs
on the test images bit for bit.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _report import data_dir, write_table

RUN = """
import sys, numpy as np
from sklearn_uflow import UFlowDetector
from sklearn_uflow.datasets import load_anomaly_folder, make_defects
folder = sys.argv[2]
if folder:
    data = load_anomaly_folder(folder, image_size=128)
    train, test = data.train_images, data.test_images
else:
    X, y, _ = make_defects(n_samples=60, image_size=128, random_state=0)
    train, test = X[y == 0], X
from sklearn_uflow import CNNFeatureTransformer
d = UFlowDetector(CNNFeatureTransformer(input_size=128), random_state=0, device="cpu").fit(train)
weights = np.concatenate([p.numpy().ravel() for p in d.flow_.state_dict().values()])
np.savez(sys.argv[1], maps=d.anomaly_maps(test), log_nfa=d.log_nfa_maps(test), masks=d.predict_masks(test),
         scores=d.score_samples(test), weights=weights)
"""


def main():
    folder = data_dir() / "hazelnut_toy/hazelnut_toy"
    source = str(folder) if folder.is_dir() else ""
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for k in range(2):
            path = Path(tmp) / f"run{k}.npz"
            subprocess.run([sys.executable, "-c", RUN, str(path), source], check=True, capture_output=True)
            runs.append(np.load(path))
        rows = [[key, runs[0][key].size, "yes" if np.array_equal(runs[0][key], runs[1][key]) else "no",
                 f"{np.max(np.abs(runs[0][key].astype(float) - runs[1][key].astype(float))):.3g}"]
                for key in ("weights", "maps", "log_nfa", "masks", "scores")]
    write_table("bench_determinism", "Determinism", ["output", "values", "bit-identical", "largest difference"],
                rows, notes=f"Two fits with ``random_state=0`` in separate processes on "
                            f"{'hazelnut_toy' if source else 'make_defects images'} (128×128, Lite0, CPU), "
                            "compared on the test images.")


if __name__ == "__main__":
    main()
