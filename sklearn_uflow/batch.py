"""Score collections of image files, in this process or on a Dask cluster.

:func:`score_files` cuts a list of files into tasks of ``files_per_task``
files. Each task reads its files, scores them with one pass of the backbone
and the flow, writes an anomaly map, a mask and an overlay per image, and
returns one summary row per file. Run in-process or on a cluster, the tasks
are the same, so the files and the summary are the same. A file that cannot
be read or scored gets a row with its error; the others carry on. Every file
is written whole or not at all, ``results.csv`` last, and the output folder
follows the rules of :class:`sklearn_uflow.outputs.OutputFolder`: new, empty
or an earlier run's (whose recorded files are removed only on
``overwrite``), never one of the inputs, one run at a time.
"""

import csv
import math
import os
from pathlib import Path

import numpy as np

from .outputs import OutputFolder, atomic_path

__all__ = ["COLOUR_RANGE", "RESULT_COLUMNS", "IMAGE_OUTPUTS", "image_outputs", "output_names", "score_files",
           "write_outputs", "write_results"]

RESULT_COLUMNS = ("image", "max_anomaly_score", "decision", "min_log10_nfa", "n_regions", "error")
#: The files written per image ``NAME``: ``NAME_map.png``, ``NAME_mask.png``, ``NAME_overlay.png``.
IMAGE_OUTPUTS = ("map", "mask", "overlay")

# One colour scale for every image and every run, so that pictures are
# comparable and do not depend on which other images were scored with them.
# Its bottom is the anomaly score (eq. 2) of a pixel whose latents have their
# expected energy under normality, u = C at every scale: 1 - exp(-1/2).
COLOUR_RANGE = (1.0 - math.exp(-0.5), 1.0)


def output_names(files):
    """The output name of each image file.

    A file's output name is its stem, made unique (by a running number)
    where two files share one.

    Parameters
    ----------
    files : list of path-like
        Image files.

    Returns
    -------
    names : list of str
        One name per file, in order.

    See Also
    --------
    image_outputs : The files written under each name.

    Examples
    --------
    >>> from sklearn_uflow.batch import output_names
    >>> output_names(["good/001.png", "crack/002.png"])
    ['001', '002']
    >>> output_names(["good/001.png", "crack/001.png", "crack/002.png"])  # a stem shared: every name numbered
    ['00000_001', '00001_001', '00002_002']
    """
    names = [Path(f).stem for f in files]
    if len(set(names)) < len(names):
        names = [f"{i:05d}_{name}" for i, name in enumerate(names)]
    return names


def image_outputs(names):
    """The files :func:`write_outputs` writes for images of these output names.

    The names are planned before any image is read, so that a run can check
    its output folder, and refuse it, before any work.

    Parameters
    ----------
    names : list of str
        Output names.

    Returns
    -------
    files : list of str
        ``NAME_map.png``, ``NAME_mask.png`` and ``NAME_overlay.png`` of each.

    See Also
    --------
    output_names : The output name of each image file.
    sklearn_uflow.outputs.OutputFolder : The folder that checks and records them.

    Examples
    --------
    >>> from sklearn_uflow.batch import image_outputs
    >>> image_outputs(["a"])
    ['a_map.png', 'a_mask.png', 'a_overlay.png']
    """
    return [f"{name}_{kind}.png" for name in names for kind in IMAGE_OUTPUTS]


def _save_png(array, path):
    from PIL import Image

    with atomic_path(path) as temporary:
        Image.fromarray(array).save(temporary, format="PNG")


def _row(name, error=None):
    return dict.fromkeys(RESULT_COLUMNS, "") | {"image": name, "error": error or ""}


def write_outputs(images, maps, log_nfa, names, output_dir, epsilon, true_masks=None):
    """Write each image's map, mask and overlay PNG files; one summary row each.

    The summary is read from the maps as scored; the files are at each
    image's own size, which may differ from the maps' (scores resized
    bilinearly, NFA values, each a region's, repeated). With ``true_masks``
    (the ground truth, at the maps' size), the overlays also draw its
    contour, in green.

    Parameters
    ----------
    images : sequence of ndarray of shape (H_i, W_i[, C])
        The images as read, each at its own size.
    maps : ndarray of shape (n, H, W)
        Their anomaly maps, as scored.
    log_nfa : ndarray of shape (n, H, W)
        Their log10 NFA maps.
    names : sequence of str
        Output name of each image: ``NAME_map.png``, ``NAME_mask.png``,
        ``NAME_overlay.png``.
    output_dir : path-like
        The folder to write into.
    epsilon : float
        The NFA threshold of the masks.
    true_masks : ndarray of shape (n, H, W), default=None
        The ground truth, drawn on the overlays.

    Returns
    -------
    rows : list of dict
        One summary row per image, keyed by :data:`RESULT_COLUMNS`.

    See Also
    --------
    score_files : Read, score and write image files.
    write_results : The summary rows as CSV.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from pathlib import Path
    >>> from sklearn_uflow.batch import write_outputs
    >>> log_nfa = np.full((1, 8, 8), 3.0)
    >>> log_nfa[0, 2:4, 2:4] = -4.0
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     rows = write_outputs([np.zeros((8, 8), np.uint8)], np.zeros((1, 8, 8)), log_nfa, ["a"], folder, 0.05)
    ...     files = sorted(p.name for p in Path(folder).iterdir())
    >>> files, rows[0]["decision"], rows[0]["n_regions"]
    (['a_map.png', 'a_mask.png', 'a_overlay.png'], 'anomalous', 1)
    """
    from scipy import ndimage

    from ._resize import resize_bilinear, resize_nearest
    from .plotting import heatmap, overlay

    output_dir, rows = Path(output_dir), []
    truths = [None] * len(names) if true_masks is None else true_masks
    for image, scores, nfa, name, truth in zip(images, maps, log_nfa, names, truths):
        mask = nfa <= np.log10(epsilon)
        rows.append(_row(name) | {
            "max_anomaly_score": float(scores.max()),
            "decision": "anomalous" if mask.any() else "normal",
            "min_log10_nfa": float(nfa.min()),
            "n_regions": ndimage.label(mask)[1],  # 4-connected, as the component trees' regions
        })
        scores = resize_bilinear(scores, image.shape[:2])
        mask = resize_nearest(nfa, image.shape[:2]) <= np.log10(epsilon)
        if truth is not None:
            truth = resize_nearest(np.asarray(truth, bool), image.shape[:2])
        pictures = (heatmap(scores, *COLOUR_RANGE), mask.astype(np.uint8) * 255,
                    overlay(image, scores, mask, true_mask=truth, vmin=COLOUR_RANGE[0], vmax=COLOUR_RANGE[1]))
        for picture, file in zip(pictures, image_outputs([name])):
            _save_png(picture, output_dir / file)
    return rows


def _progress(total, verbose):
    """A bar counting the images scored; none without tqdm (the runtime's install) or without ``verbose``."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc="scoring", unit="image", disable=not verbose)


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass


def _error(exc):
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _score_task(detector, files, names, output_dir, epsilon):
    """Read, score and write one task's files; one summary row per file."""
    from .datasets import read_image, resize_image

    color = "gray" if detector.n_channels_ == 1 else "rgb"
    rows, images, read = {}, [], []
    for file, name in zip(files, names):
        try:
            images.append(read_image(file, color=color))
            read.append(name)
        except (ValueError, OSError) as exc:
            rows[name] = _row(name, str(exc).splitlines()[0])
    if images:
        try:
            maps, log_nfa = detector.maps_and_log_nfa(np.stack([resize_image(im, detector.image_size_)
                                                                for im in images]))
            rows |= {row["image"]: row for row in write_outputs(images, maps, log_nfa, read, output_dir, epsilon)}
        except Exception as exc:  # noqa: BLE001 - one task's failure must not end the run
            rows |= {name: _row(name, _error(exc)) for name in read}
    return [rows[name] for name in names]


def _client(scheduler):
    try:
        from distributed import Client
    except ImportError:
        raise ImportError("scoring on a Dask cluster needs the dask extra: pip install 'sklearn-uflow[dask]'") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    return Client(scheduler), True


def score_files(detector, files, output_dir, *, epsilon=None, scheduler=None, files_per_task=None, overwrite=False,
                verbose=0):
    """Score image files and write their maps, masks, overlays and a summary.

    For each image ``NAME``, writes ``NAME_map.png`` (the anomaly map in the
    colour range :data:`COLOUR_RANGE`), ``NAME_mask.png`` (the pixels with
    ``NFA <= epsilon``) and ``NAME_overlay.png``, and for the whole run
    ``results.csv`` with the columns :data:`RESULT_COLUMNS`.

    Parameters
    ----------
    detector : UFlowDetector or sklearn_uflow.runtime.ExportedDetector
        A fitted detector with its own feature step, or an exported one
        (:func:`sklearn_uflow.runtime.load`). Images are read in its
        colour mode and scored at its ``image_size_``; maps, masks and
        overlays are written at each file's own size.
    files : list of path-like
        Image files. Output names are their stems (numbered when two share
        one).
    output_dir : path-like or OutputFolder
        Folder for the outputs, created if needed: a new or empty folder, or
        one an earlier run wrote (see ``overwrite``); never one that holds
        other files, nor one of ``files``' folders. The run records what it
        writes there (:class:`sklearn_uflow.outputs.OutputFolder`); an open
        ``OutputFolder`` that plans these outputs is written into as it is,
        for a caller that adds files of its own to the run. On a cluster, the
        workers write there: it must be on a file system they share.
    epsilon : float, default=None
        NFA threshold of the masks, above 0; the detector's ``epsilon`` by
        default.
    scheduler : None, str or distributed.Client, default=None
        ``None`` scores in this process. An address (``"tcp://host:8786"``)
        or a ``Client`` scores on that Dask cluster: the detector is sent
        once to each worker, and the tasks carry only file names.
    files_per_task : int, default=None
        Files read and scored together by one task, at least 1; by default
        the detector's scoring batch (16 images, or ``batch_size`` if
        larger), with which a collection of readable files gives the figures
        of in-process scoring of the image array bit for bit.
    overwrite : bool, default=False
        Whether to remove the files an earlier run recorded in
        ``output_dir`` first (and only those); by default such a folder is
        refused before any work.
    verbose : int, default=0
        A progress bar over the files when positive.

    Returns
    -------
    rows : list of dict
        One row per file, in the order of ``files``, with the keys
        :data:`RESULT_COLUMNS`; ``error`` is empty for files that were
        scored.

    Raises
    ------
    sklearn_uflow.outputs.OutputExistsError
        If ``output_dir`` holds files this run may not remove (a
        ``FileExistsError``), or another run is writing there.
    ValueError
        If ``epsilon`` or ``files_per_task`` is out of range, or
        ``output_dir`` is or contains one of ``files``.

    See Also
    --------
    write_outputs : The files written for images already scored.
    sklearn_uflow.report.write_report : The HTML page of a run's results.

    Examples
    --------
    >>> from sklearn_uflow.batch import score_files
    >>> rows = score_files(detector, files, "out")  # doctest: +SKIP
    >>> rows = score_files(detector, files, "/shared/out", scheduler="tcp://10.0.0.5:8786")  # doctest: +SKIP
    """
    from .runtime import ExportedDetector

    if not isinstance(detector, ExportedDetector):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(detector, "flow_")
        if getattr(detector, "extractor_", None) is None:
            raise TypeError("score_files needs a detector with its own feature step, not extractor='precomputed'.")
    epsilon = detector.epsilon if epsilon is None else epsilon
    if not 0 < epsilon < math.inf:
        raise ValueError(f"epsilon must be a number above 0, got {epsilon!r}.")
    files_per_task = detector.scoring_batch_size if files_per_task is None else files_per_task
    if not (isinstance(files_per_task, int) and files_per_task >= 1):
        raise ValueError(f"files_per_task must be an integer of at least 1, got {files_per_task!r}.")
    files = [os.fspath(f) for f in files]
    names = output_names(files)
    outputs = [*image_outputs(names), "results.csv"]
    if isinstance(output_dir, OutputFolder):
        if not output_dir.is_open:
            raise ValueError("score_files writes into an OutputFolder inside its with block only.")
        if missing := set(outputs) - set(output_dir.outputs):
            raise ValueError(f"the output folder does not plan {len(missing)} of the files written, e.g. "
                             f"{sorted(missing)[0]}.")
        return _score_into(detector, files, names, output_dir.path, epsilon, scheduler, files_per_task, verbose)
    with OutputFolder(output_dir, outputs, inputs=files, overwrite=overwrite,
                      command="sklearn_uflow.batch.score_files") as folder:
        return _score_into(detector, files, names, folder.path, epsilon, scheduler, files_per_task, verbose)


def _score_into(detector, files, names, output_dir, epsilon, scheduler, files_per_task, verbose):
    tasks = [(files[start:start + files_per_task], names[start:start + files_per_task])
             for start in range(0, len(files), files_per_task)]
    with _progress(len(files), verbose) as progress:
        if scheduler is None:
            results = []
            for task_files, task_names in tasks:
                results.append(_score_task(detector, task_files, task_names, output_dir, epsilon))
                progress.update(len(task_files))
        else:
            results = _score_on_cluster(detector, tasks, output_dir, epsilon, scheduler, progress)
    rows = [row for task_rows in results for row in task_rows]
    write_results(rows, output_dir / "results.csv")
    return rows


def _score_on_cluster(detector, tasks, output_dir, epsilon, scheduler, progress):
    from distributed import as_completed

    client, owned = _client(scheduler)
    try:
        # One copy of the model per worker, not one per task.
        model = client.scatter(detector, broadcast=True, hash=False)
        futures = [client.submit(_score_task, model, task_files, task_names, os.fspath(output_dir), epsilon,
                                 pure=False)
                   for task_files, task_names in tasks]
        sizes = {future.key: len(task_files) for future, (task_files, _) in zip(futures, tasks)}
        try:
            for future in as_completed(futures):
                progress.update(sizes[future.key])
        except BaseException:  # interrupted: no task goes on writing into the folder
            client.cancel(futures)
            raise
        results = []
        for future, (_, task_names) in zip(futures, tasks):
            if future.status == "finished":
                results.append(future.result())
            else:  # a lost worker, say: the task's files fail, the run goes on
                results.append([_row(name, _error(future.exception())) for name in task_names])
        return results
    finally:
        if owned:
            client.close()


def _format(value):
    return f"{value:.6f}" if isinstance(value, float) else value


def write_results(rows, path):
    """Write summary rows as CSV, whole or not at all.

    The rows are written to a temporary file beside ``path`` that replaces it
    only once complete, so an interrupted run leaves no truncated table.

    Parameters
    ----------
    rows : list of dict
        Rows keyed by :data:`RESULT_COLUMNS`.
    path : path-like
        The CSV file.

    See Also
    --------
    write_outputs : The rows it writes.
    sklearn_uflow.outputs.atomic_path : Whole or not at all.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_uflow.batch import write_results
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     row = dict(image="a.png", max_anomaly_score=0.3, decision="normal", min_log10_nfa=2.5, n_regions=0)
    ...     write_results([{**row, "error": ""}], Path(folder) / "results.csv")
    ...     print(Path(folder, "results.csv").read_text().splitlines()[0])
    image,max_anomaly_score,decision,min_log10_nfa,n_regions,error
    """
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RESULT_COLUMNS)
        writer.writerows([_format(row[key]) for key in RESULT_COLUMNS] for row in rows)
