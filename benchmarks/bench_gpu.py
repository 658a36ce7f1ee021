"""Speed and memory of UFlowDetector on a CUDA GPU, and how its results agree
with the CPU's.

Synthetic images only (``make_defects``), so that no dataset has to travel to
the GPU machine. Two configurations:

- the offline preset ``extractor="efficientnet_lite0"`` at 256×256 with every
  default, fitted on 200 normal images;
- the paper's MS-CaiT at 448×448, with random weights saved to local files and
  passed as ``weights={...: path}`` (the path a user without internet takes;
  the time does not depend on the weights), fitted for 3 epochs on 64 images.

For the Lite0 fit it also reports the largest difference between the maps the
GPU gives and those of the same model unpickled on a machine without CUDA (the
CPU), and between two GPU fits with the same ``random_state``.

Usage: ``python benchmarks/bench_gpu.py`` on a machine with CUDA. Writes its
table into ``docs/benchmarks/scaling.rst``.
"""

import pickle
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from _report import write_table

DEVICE = "cuda"  # a dry run on a machine without CUDA sets "cpu"


def _timed(function, *args):
    # The outputs are NumPy arrays, copied from the GPU: the work has ended when they return.
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def _peak_gib():
    return torch.cuda.max_memory_allocated() / 2**30


def _on_cpu(detector, folder):
    """The detector pickled, and saved as a model file, then both loaded as on
    a machine without CUDA."""
    from sklearn_uflow import UFlowDetector

    blob = pickle.dumps(detector)
    detector.save(Path(folder) / "model.uflow")
    with mock.patch.object(torch.cuda, "is_available", return_value=False):
        return pickle.loads(blob), UFlowDetector.load(Path(folder) / "model.uflow")


def lite0():
    from sklearn_uflow import UFlowDetector
    from sklearn_uflow.datasets import make_defects
    from sklearn_uflow.metrics import pixel_roc_auc

    X, y, masks = make_defects(n_samples=400, anomaly_ratio=0.4, image_size=256, random_state=0)
    normal = np.flatnonzero(y == 0)
    train = normal[:200]
    test = np.setdiff1d(np.arange(len(X)), train)

    torch.cuda.reset_peak_memory_stats()
    detector = UFlowDetector(extractor="efficientnet_lite0", random_state=0, device=DEVICE)
    _, fit_seconds = _timed(detector.fit, X[train])
    detector.anomaly_maps(X[test[:16]])  # warm-up
    maps, maps_seconds = _timed(detector.anomaly_maps, X[test])
    peak = _peak_gib()

    with tempfile.TemporaryDirectory() as folder:
        unpickled, loaded = _on_cpu(detector, folder)
    assert unpickled.device_.type == loaded.device_.type == "cpu"
    cpu_maps = unpickled.anomaly_maps(X[test[:32]])
    loaded_maps = loaded.anomaly_maps(X[test[:32]])
    again = UFlowDetector(extractor="efficientnet_lite0", random_state=0, device=DEVICE).fit(X[train])
    row = ["efficientnet_lite0, 256×256, defaults", f"{len(train)} / {len(test)}",
           f"{fit_seconds:.1f} ({fit_seconds / len(train):.3f})",
           f"{detector.n_iter_} / {len(detector.validation_loss_curve_) or detector.n_iter_}",
           f"{1000 * maps_seconds / len(test):.2f}", f"{peak:.2f}"]
    checks = [
        ["pixel AUROC on the synthetic test images (GPU fit)", f"{100 * pixel_roc_auc(masks[test], maps):.2f}"],
        ["largest difference, maps on the GPU against the same model unpickled on the CPU (32 images)",
         f"{np.abs(cpu_maps - maps[:32]).max():.2e}"],
        ["largest difference, maps on the GPU against the model saved by save(), loaded on the CPU (32 images)",
         f"{np.abs(loaded_maps - maps[:32]).max():.2e}"],
        ["largest difference between the maps of two GPU fits with random_state=0",
         f"{np.abs(again.anomaly_maps(X[test]) - maps).max():.2e}"],
    ]
    return row, checks


def mscait():
    import timm

    from sklearn_uflow import MSCaiTTransformer, UFlowDetector
    from sklearn_uflow.datasets import make_defects

    X, y, _ = make_defects(n_samples=96, anomaly_ratio=1 / 3, image_size=448, random_state=0)
    with tempfile.TemporaryDirectory() as folder:
        weights = {}
        for name in ("cait_m48_448", "cait_s24_224"):
            weights[name] = str(Path(folder) / f"{name}.pth")
            torch.save(timm.create_model(name, pretrained=False).state_dict(), weights[name])
        torch.cuda.reset_peak_memory_stats()
        detector = UFlowDetector(extractor=MSCaiTTransformer(weights=weights), max_epochs=3, random_state=0,
                                 device=DEVICE)
        train, test = X[y == 0], X[y == 1]
        _, fit_seconds = _timed(detector.fit, train)
    detector.anomaly_maps(test[:4])  # warm-up
    _, maps_seconds = _timed(detector.anomaly_maps, test)
    return ["MS-CaiT (random weights from local files), 448×448, max_epochs=3", f"{len(train)} / {len(test)}",
            f"{fit_seconds:.1f} ({fit_seconds / len(train):.3f})",
            f"{detector.n_iter_} / {len(detector.validation_loss_curve_) or detector.n_iter_}",
            f"{1000 * maps_seconds / len(test):.2f}", f"{_peak_gib():.2f}"]


def main():
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU.")
    gpu = torch.cuda.get_device_name()
    lite0_row, checks = lite0()
    rows = [lite0_row, mscait()]
    write_table(
        "bench_gpu", f"On a GPU ({gpu})",
        ["configuration", "train / test images", "fit s (s per train image)", "best / run epochs",
         "anomaly_maps ms/image", "peak GPU memory GiB"],
        rows + [[name, "", "", "", "", value] for name, value in checks],
        notes=f"``device='cuda'`` on one {gpu}. Synthetic images from ``make_defects`` (no dataset travels to "
              "the GPU machine). Times include feature extraction; the fit's includes building the extractor. "
              "The last rows give, in their last column, the checks of the Lite0 fit: its accuracy on the "
              "synthetic defects, how far the CPU's maps of the same pickled model are from the GPU's, and "
              "whether a second GPU fit with the same seed reproduces the first.")


if __name__ == "__main__":
    main()
