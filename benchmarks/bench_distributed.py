"""Throughput of folder scoring in-process and on a local Dask cluster.

Fits the Lite0 preset on magnetic_tile's good training images (256×256,
one epoch: throughput does not depend on training), then scores its 579 test
files with :func:`sklearn_uflow.batch.score_files`, reading each file and
writing its map, mask, overlay and the summary:

* in this process, with torch's default threads and with one thread;
* on a ``LocalCluster`` of 1 and of 2 worker processes with one thread each
  (distributed gives each worker thread one torch thread), with dask's
  default worker environment and with a larger glibc mmap threshold.

The overhead of the distributed path per image is the cluster run's time
minus the in-process time with the same number of torch threads per process,
divided by the number of images. Cluster start-up (processes importing torch)
is reported apart, as it is paid once per cluster.
"""

import tempfile
import time
from pathlib import Path

import dask
import torch

from _report import data_dir, write_table
from sklearn_uflow._torch_utils import torch_threads

CATEGORY = "magnetic_tile/magnetic_tile"

# distributed starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also
# switches off glibc's adaptive mmap threshold: every large tensor is then
# mmap-ed and unmapped again, and the page faults nearly double the time
# per image. Raising the mmap threshold keeps dask's trimming and the speed.
MALLOC = {
    "dask's default environment": {},
    "MALLOC_MMAP_THRESHOLD_=32 MiB": {"distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 2**25},
}


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main():
    from distributed import Client, LocalCluster

    from sklearn_uflow import UFlowDetector
    from sklearn_uflow.batch import score_files
    from sklearn_uflow.datasets import load_anomaly_folder

    folder = data_dir() / CATEGORY
    data = load_anomaly_folder(folder, image_size=256)
    detector = UFlowDetector("efficientnet_lite0", augmentation="none", max_epochs=1, random_state=0, device="cpu")
    detector.fit(data.train_images)
    files = [folder / name for name in data.test_files]
    n = len(files)
    default_threads = torch.get_num_threads()

    with tempfile.TemporaryDirectory() as out:
        def local(threads):
            with torch_threads(threads):
                # first-call costs out of the timing; each run replaces the folder's earlier run (overwrite)
                score_files(detector, files[:32], Path(out) / "warm", overwrite=True)
                return timed(lambda: score_files(detector, files, Path(out) / f"local{threads}", overwrite=True))

        in_process = {threads: local(threads) for threads in sorted({default_threads, 1})}
        rows = [[f"in-process, {t} torch thread{'s' * (t > 1)}", "", f"{n / s:.1f}", f"{1000 * s / n:.1f}", ""]
                for t, s in in_process.items()]
        for malloc, config in MALLOC.items():
            for workers in (1, 2):
                start = time.perf_counter()
                with dask.config.set(config), LocalCluster(
                        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None) as cluster, Client(cluster) as client:
                    client.wait_for_workers(workers)
                    startup = time.perf_counter() - start
                    score_files(detector, files[:32], Path(out) / "warm", scheduler=client, overwrite=True)
                    seconds = timed(lambda: score_files(detector, files, Path(out) / "dask", scheduler=client,
                                                        overwrite=True))
                overhead = 1000 * (seconds * workers - in_process[1]) / n
                rows.append([f"Dask, {workers} worker{'s' * (workers > 1)} x 1 thread, {malloc}", f"{startup:.1f}",
                             f"{n / seconds:.1f}", f"{1000 * seconds / n:.1f}", f"{overhead:+.1f}"])
                print(rows[-1], flush=True)

    write_table(
        "bench_distributed", "Scoring image folders in-process and on Dask",
        ["path", "cluster start-up s", "images per s", "ms per image", "overhead ms per image"], rows,
        notes=f"``score_files`` on the {n} test images of ``{CATEGORY}`` (256×256, Lite0 preset): each image is "
              "read, scored (anomaly map and log-NFA map from one pass) and written as three PNG files, plus "
              "``results.csv``. Overhead per image: the cluster's worker-seconds minus the in-process seconds "
              "with one torch thread, per image (negative values are measurement noise).",
    )


if __name__ == "__main__":
    main()
