"""Peak memory of scoring against the number of images.

Fits a small detector once, saves it, then in a fresh process per size loads
it and runs ``anomaly_maps`` on N synthetic 256x256 RGB images. Scoring is
batched, so the working memory should stay flat; what grows is the input
(N x 192 KiB) and the returned maps (N x 256 KiB), reported beside it.
"""

import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _report import write_table

SIZES = (100, 500, 1000, 2000)


def score(model, n):
    from sklearn_uflow import UFlowDetector

    detector = UFlowDetector.load(model)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    X = np.random.default_rng(0).integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)
    maps = detector.anomaly_maps(X)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(base, peak, (X.nbytes + maps.nbytes) / 2**30)


def main():
    from sklearn_uflow import UFlowDetector
    from sklearn_uflow.datasets import make_defects

    X, y, _ = make_defects(n_samples=24, image_size=256, random_state=0)
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "model.uflow"
        detector = UFlowDetector(extractor="efficientnet_lite0", max_epochs=1, random_state=0, device="cpu")
        detector.fit(X[y == 0]).save(model)
        rows = []
        for n in SIZES:
            out = subprocess.run([sys.executable, __file__, "--one", str(model), str(n)], capture_output=True,
                                 text=True, check=True)
            base, peak, data = map(float, out.stdout.split()[-3:])
            rows.append([n, f"{peak:.2f}", f"{data:.2f}", f"{peak - data - base:.2f}"])
            print(rows[-1], flush=True)
    write_table("bench_memory", "Memory of scoring", ["images", "peak RSS GiB", "input + maps GiB",
                                                      "working memory GiB (peak - data - loaded model)"], rows,
                notes="``detector.anomaly_maps(X)`` on N random 256×256 RGB images (uint8), Lite0 preset, in a "
                      "fresh process per N. The working memory beyond the data and the loaded model stays flat "
                      "because features and latents are computed batch by batch.")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        score(sys.argv[2], int(sys.argv[3]))
    else:
        main()
