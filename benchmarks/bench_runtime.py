"""The torch-free runtime against the library: parity on the README's demo, maps per image, install footprint.

Fits the demo's detector (Lite0, 20 good synthetic 256x256 images, the default training), exports it to ONNX
and scores the 60 other images with both: the largest map difference, the masks and decisions that agree, and
the maps' milliseconds per image in onnxruntime against torch, same machine, one run each after a warm-up.
With ``--install``, also installs the package twice into fresh virtual environments in a temporary folder (the
``runtime`` extra, then the ``full`` one, from the checkout) and reports each one's size, time and whether
torch is there; the pip cache of this machine is used, so the times are those of a machine that has the wheels.

Usage: python benchmarks/bench_runtime.py [--install]
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _report import write_table

REPOSITORY = Path(__file__).resolve().parents[1]


def _folder_mib(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def install(extra, folder):
    """Size (MiB), seconds and whether torch is importable, of a fresh venv with ``.[extra]``."""
    venv = Path(folder) / f"venv-{extra}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    start = time.perf_counter()
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"{REPOSITORY}[{extra}]"], check=True)
    seconds = time.perf_counter() - start
    has_torch = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"],
                               capture_output=True).returncode == 0
    return venv, _folder_mib(venv), seconds, has_torch


def timed(function, X):
    function(X[:2])  # warm-up: sessions, caches, lazy imports
    start = time.perf_counter()
    function(X)
    return 1000 * (time.perf_counter() - start) / len(X)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="also measure fresh installs")
    args = parser.parse_args()

    from sklearn_uflow import UFlowDetector, runtime
    from sklearn_uflow.datasets import make_defects
    from sklearn_uflow.export import export_onnx

    X, y, _ = make_defects(n_samples=80, image_size=256, random_state=0)
    good = np.flatnonzero(y == 0)
    tested = np.setdiff1d(np.arange(len(X)), good[:20])
    detector = UFlowDetector("efficientnet_lite0", random_state=0, device="cpu").fit(X[good[:20]])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(detector, Path(folder) / "demo.onnx")
        exported = runtime.load(path)
        maps, log_nfa = detector.maps_and_log_nfa(X[tested])
        exported_maps, exported_log_nfa = exported.maps_and_log_nfa(X[tested])
        threshold = np.log10(detector.epsilon)
        same_masks = np.all((log_nfa <= threshold) == (exported_log_nfa <= threshold), axis=(1, 2))
        same_decisions = detector.predict(X[tested]) == exported.predict(X[tested])
        rows.append(["parity on the demo's 60 test images",
                     f"largest map difference {np.abs(maps - exported_maps).max():.1e}; identical masks "
                     f"{same_masks.sum()} of {len(tested)}; identical decisions {same_decisions.sum()} of "
                     f"{len(tested)}"])
        torch_ms = timed(detector.anomaly_maps, X[tested])
        onnx_ms = timed(exported.anomaly_maps, X[tested])
        rows.append(["anomaly maps, ms per image (batches of 16)",
                     f"onnxruntime {onnx_ms:.1f}, torch {torch_ms:.1f} ({torch_ms / onnx_ms:.2f}x)"])
        rows.append(["masks (log NFA maps), ms per image",
                     f"onnxruntime {timed(exported.log_nfa_maps, X[tested]):.1f}, "
                     f"torch {timed(detector.log_nfa_maps, X[tested]):.1f}"])
        rows.append(["file", f"{Path(path).stat().st_size / 2**20:.1f} MiB"])
        if args.install:
            sizes = {}
            for extra in ("runtime", "full"):
                venv, mib, seconds, has_torch = install(extra, folder)
                sizes[extra] = mib
                rows.append([f'fresh venv, pip install ".[{extra}]"',
                             f"{mib:,.0f} MiB in {seconds:.0f} s; torch installed: {'yes' if has_torch else 'no'}"])
                if extra == "runtime":
                    # the exported demo, scored in the runtime-only environment
                    script = (f"import numpy as np; from sklearn_uflow import runtime; "
                              f"print(runtime.load({str(path)!r}).predict(np.load({str(folder)!r} + '/x.npy')))")
                    np.save(Path(folder) / "x.npy", X[tested])
                    out = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True,
                                         text=True, check=True).stdout
                    labels = np.array(out.replace("[", " ").replace("]", " ").split(), dtype=int)
                    rows.append(["the demo scored in the runtime-only venv",
                                 f"decisions identical to the library's: {int(np.sum(labels == exported.predict(X[tested])))} "
                                 f"of {len(tested)}"])
                shutil.rmtree(venv)
            rows.append(["runtime install against the full one", f"{100 * sizes['runtime'] / sizes['full']:.1f} %"])
    write_table("bench_runtime", "Deploying without torch", ["measure", "result"], rows,
                notes="The README demo's detector exported with ``sklearn-uflow export`` and scored by "
                      ":mod:`sklearn_uflow.runtime` (onnxruntime, NumPy, SciPy) against the library. Install "
                      "times are with this machine's pip cache holding the wheels (downloads not counted).")


if __name__ == "__main__":
    main()
