"""Command line: ``sklearn-uflow`` with ``fit``, ``predict``, ``evaluate`` and ``run``.

* ``sklearn-uflow fit GOOD_DIR -o MODEL`` fits a detector on a folder of
  defect-free images and writes a safe model file;
* ``sklearn-uflow predict MODEL IMAGE_OR_DIR... -o OUT`` writes, per image,
  the anomaly map, the mask and an overlay as PNG files, and ``results.csv``
  (score, decision, smallest log10 NFA, number of regions);
* ``sklearn-uflow evaluate MODEL DATASET_DIR`` prints the metric table on an
  MVTec-layout folder (and with ``-o OUT`` writes the files of ``predict``,
  the overlays with the true defects' contours);
* ``sklearn-uflow run [FOLDER] -o OUT`` does all three on an MVTec-layout
  folder, or on synthetic images without one.

Exit code 0 on success; on bad input, 2 and a one-line reason; interrupted
by Ctrl-C or SIGTERM, 130 or 143 and one line. ``predict`` scores every file
it can: when some could not be read or scored, it still writes the others,
lists the failures in the ``error`` column of ``results.csv`` and exits with
1. With ``--scheduler ADDRESS`` it runs on a Dask cluster (see
:func:`sklearn_uflow.batch.score_files`).

Every argument is checked first, then the input paths, then the outputs,
and only then does any work, writing or removal start. A run never writes
into its inputs, and removes or replaces only what a run recorded: an
output folder must be new, empty, or the folder of an earlier run, whose
recorded files ``--overwrite`` removes (see :mod:`sklearn_uflow.outputs`);
one run at a time writes into a folder. Every file is written whole or not
at all, and ``results.csv`` and ``report.html`` last, so that their presence
means the run finished.

Nothing heavy is imported at module level: the signal handlers are in place
before torch loads, so that Ctrl-C at any moment ends with one line.
"""

import argparse
import math
import re
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

__all__ = ["main"]

# A Dask scheduler address: a protocol and its address, or HOST:PORT.
_SCHEDULER_ADDRESS = re.compile(r"(?:tcp|tls|ucx|ws|wss|inproc)://\S+|[\w.\-]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}")


class CommandError(Exception):
    """A problem with the command's input, reported in one line."""


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, as KeyboardInterrupt is, so that no
    handler of ordinary errors carries on past it."""


def _terminate(signum, frame):
    raise Terminated


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"sklearn-uflow: warning: {str(message).splitlines()[0]}", file=sys.stderr)


def _image_files(paths):
    from .datasets import image_files

    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += image_files(path)
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"no such file or folder: {path}")
    if not files:
        raise CommandError(f"no images found in {', '.join(map(str, paths))}")
    return files


def _epsilon(detector, args):
    """The threshold: ``--epsilon`` when given (checked by :func:`_check_arguments`), else the model's."""
    return detector.epsilon if args.epsilon is None else args.epsilon


def _size(values, option):
    """SIDE, H W or auto."""
    if values == ["auto"]:
        return "auto"
    try:
        sizes = [int(v) for v in values]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise CommandError(f"{option} takes SIDE, H W (positive integers) or auto, not {' '.join(values)}")
    return sizes[0] if len(sizes) == 1 else tuple(sizes)


def _check_arguments(args):
    """Every argument's value, before any path is looked at; the detector to fit built and validated."""
    if getattr(args, "epsilon", None) is not None and not 0 < args.epsilon < math.inf:
        raise CommandError(f"--epsilon must be a number above 0, got {args.epsilon}")
    if getattr(args, "files_per_task", None) is not None and args.files_per_task < 1:
        raise CommandError(f"--files-per-task must be at least 1, got {args.files_per_task}")
    scheduler = getattr(args, "scheduler", None)
    if scheduler is not None and not _SCHEDULER_ADDRESS.fullmatch(scheduler):
        raise CommandError(f"--scheduler takes a Dask scheduler address such as tcp://10.0.0.5:8786, "
                           f"not {scheduler!r}")
    if getattr(args, "n_synthetic", 8) < 8:
        raise CommandError(f"--n-synthetic must be at least 8 (a quarter of them are fitted on), "
                           f"got {args.n_synthetic}")
    if hasattr(args, "extractor"):
        args.image_size = _size(args.image_size, "--image-size")
        if args.command == "run" and args.folder is None and not isinstance(args.image_size, (int, str)):
            raise CommandError("the synthetic images are square: --image-size takes one SIDE (or auto: 256)")
        args.detector = _make_detector(args)


def _read_images(files, image_size, color):
    import numpy as np

    from .datasets import auto_image_size, read_image

    if image_size == "auto":
        image_size = auto_image_size(files)
    return np.stack([read_image(f, color=color, image_size=image_size) for f in files])


def _make_extractor(args):
    from . import CNNFeatureTransformer, MSCaiTTransformer

    if args.extractor == "mscait":
        return MSCaiTTransformer()
    options = {"input_size": _size(args.input_size, "--input-size")}
    if args.strides is not None:
        options["strides"] = tuple(args.strides)
    if args.pooling is not None:  # one side for every scale, or one per scale
        options["pooling"] = args.pooling[0] if len(args.pooling) == 1 else tuple(args.pooling)
    return CNNFeatureTransformer(args.extractor, **options)


def _make_detector(args):
    """The detector the options describe, its parameters validated (nothing fitted)."""
    from . import UFlowDetector

    # Flow and training options left out on the command line keep UFlowDetector's defaults.
    training = {name: getattr(args, name)
                for name in ("positional_encoding", "augmentation", "max_epochs", "batch_size", "learning_rate")
                if getattr(args, name) is not None}
    training |= {"epsilon": args.epsilon} if args.epsilon is not None else {}
    detector = UFlowDetector(_make_extractor(args), image_context=not args.no_image_context, device=args.device,
                             random_state=args.seed, verbose=int(not args.quiet), **training)
    detector._validate_params()
    detector.extractor._validate_params()
    return detector


def _fit(detector, train):
    detector.fit(train)
    judged = f"{detector.n_splits_} folds" if detector.n_splits_ > 1 else "held-out images"
    loss = (f"; best epoch {detector.n_iter_} of {len(detector.validation_loss_curve_)}, loss on {judged} "
            f"{detector.best_validation_loss_:.4f} bits/dim" if detector.best_validation_loss_ is not None else "")
    print(f"fitted on {len(train)} images in {detector.fit_seconds_:.1f} s{loss}; augmentation "
          f"{detector.augmentation_}")
    return detector


def _write_predictions(detector, images, names, out, epsilon, true_masks=None):
    from .batch import write_outputs, write_results

    maps, log_nfa = detector.maps_and_log_nfa(images)  # one pass serves every file written
    rows = write_outputs(images, maps, log_nfa, names, out, epsilon, true_masks)
    write_results(rows, out / "results.csv")
    _report(rows, out, epsilon)
    return rows, maps, log_nfa


def _parameters(detector, epsilon):
    """What a report says of the run: the detector's main parameters and choices."""
    from .runtime import ExportedDetector

    if isinstance(detector, ExportedDetector):  # its metadata holds no training options
        return [("model", f"exported to ONNX by sklearn-uflow {detector.library_version}"),
                ("image size (H, W)", detector.image_size_), ("epsilon", epsilon)]
    extractor = detector.extractor_
    return [("feature step", f"{type(extractor).__name__}({getattr(extractor, 'backbone', '')})"),
            ("image size (H, W)", detector.image_size_), ("epsilon", epsilon),
            ("augmentation", f"{detector.augmentation} (fitted with {detector.augmentation_})"),
            ("max_epochs", detector.max_epochs), ("random_state", detector.random_state)]


def _write_report(args, rows, out, detector, epsilon, metrics=()):
    if args.report:
        from .report import write_report

        path = write_report(rows, out, epsilon, _parameters(detector, epsilon), metrics)
        print(f"report: {path.resolve().as_uri()}")


def _report(rows, out, epsilon):
    scored = [row for row in rows if not row["error"]]
    print(f"wrote {3 * len(scored)} PNG files and results.csv to {out} "
          f"({sum(row['decision'] == 'anomalous' for row in scored)} of {len(scored)} images anomalous at "
          f"epsilon={epsilon:g})")
    failed = [row for row in rows if row["error"]]
    if failed:
        print(f"sklearn-uflow: {len(failed)} of {len(rows)} files failed, e.g. {failed[0]['image']}: "
              f"{failed[0]['error']} (see the error column of results.csv)", file=sys.stderr)


def _metric_table(maps, log_nfa, masks, labels, epsilon):
    import numpy as np

    from .metrics import aupro, image_roc_auc, mean_iou, pixel_roc_auc

    predicted = log_nfa <= np.log10(epsilon)
    good = labels == 0
    table = [("images (good / defective)", f"{int(good.sum())} / {int((~good).sum())}")]
    if masks.any() and not masks.all():
        table += [("pixel ROC AUC", f"{pixel_roc_auc(masks, maps):.4f}"),
                  ("AUPRO (FPR <= 0.3)", f"{aupro(masks, maps):.4f}")]
    table.append((f"mIoU at epsilon={epsilon:g}", f"{mean_iou(masks, predicted):.4f}"))
    if 0 < good.sum() < len(good):
        table.append(("image ROC AUC (max of map)", f"{image_roc_auc(labels, maps.max(axis=(1, 2))):.4f}"))
    if good.any():
        table.append(("good images with a detection", f"{predicted[good].any(axis=(1, 2)).mean():.1%}"))
    width = max(len(k) for k, _ in table)
    for key, value in table:
        print(f"{key:<{width}}  {value}")
    return table


def cmd_fit(args):
    from .model_file import is_model_file
    from .outputs import check_output_file

    files = _image_files([args.good_dir])

    def check_output():
        check_output_file(args.output, overwrite=args.overwrite, replaceable=is_model_file, inputs=[args.good_dir])

    check_output()
    color = "gray" if args.gray else "rgb"
    detector = _fit(args.detector, _read_images(files, args.image_size, color))
    check_output()  # again: the path may have been taken during the fit
    detector.save(args.output)
    print(f"model written to {args.output}")


def _load(path):
    """A model file's detector, or an exported ``.onnx`` model's (scored by the runtime)."""
    if str(path).endswith(".onnx"):
        from . import runtime

        return runtime.load(path)
    from . import UFlowDetector

    return UFlowDetector.load(path)


def _model_path(path):
    if not Path(path).is_file():
        raise CommandError(f"no model file at {path!r}")
    return path


def _output_folder(args, names, inputs, model=False):
    """The run's output folder, checked: ``names`` are the images' output names."""
    from .batch import image_outputs
    from .outputs import OutputFolder

    outputs = [*image_outputs(names), *(["results.csv"] if names else []),
               *(["report.html"] if names and args.report else []), *(["model.uflow"] if model else [])]
    return OutputFolder(args.output, outputs, inputs=inputs, overwrite=args.overwrite, command=args.argv).check()


def cmd_predict(args):
    from .batch import output_names, score_files

    model = _model_path(args.model)
    files = _image_files(args.images)
    folder = _output_folder(args, output_names(files), [model, *args.images])
    detector = _load(model)
    epsilon = _epsilon(detector, args)
    start = time.perf_counter()
    with folder:
        rows = score_files(detector, files, folder, epsilon=epsilon, scheduler=args.scheduler,
                           files_per_task=args.files_per_task, verbose=int(not args.quiet))
        where = f"on the Dask cluster at {args.scheduler}" if args.scheduler else "in this process"
        print(f"scored {len(files)} files {where} in {time.perf_counter() - start:.1f} s")
        _report(rows, folder.path, epsilon)
        _write_report(args, rows, folder.path, detector, epsilon)
    return 1 if any(row["error"] for row in rows) else 0


def cmd_export(args):
    from .export import export_onnx
    from .outputs import check_output_file
    from .runtime import is_exported_model

    model = _model_path(args.model)
    if not args.output.endswith(".onnx"):
        raise CommandError(f"the exported file's name ends with .onnx, not {args.output!r}")
    check_output_file(args.output, overwrite=args.overwrite, replaceable=is_exported_model, inputs=[model])
    path = export_onnx(_load(model), args.output, input_dtype="float32" if args.float_input else "uint8",
                       overwrite=args.overwrite)
    print(f"exported to {path}")


def _test_names(files):
    return [name.replace("/", "_").rsplit(".", 1)[0] for name in files]


def cmd_evaluate(args):
    from .datasets import list_anomaly_folder, load_anomaly_folder

    model = _model_path(args.model)
    listing = list_anomaly_folder(args.dataset_dir)
    if not listing.test_files:
        raise CommandError(f"{args.dataset_dir} has no test images")
    folder = (_output_folder(args, _test_names(listing.test_files), [model, *listing.folders])
              if args.output else None)
    detector = _load(model)
    data = load_anomaly_folder(args.dataset_dir, image_size=detector.image_size_,
                               color="gray" if detector.n_channels_ == 1 else "rgb")
    epsilon = _epsilon(detector, args)
    if folder is None:
        maps, log_nfa = detector.maps_and_log_nfa(data.test_images)
        _metric_table(maps, log_nfa, data.test_masks, data.test_labels, epsilon)
        return
    with folder:
        rows, maps, log_nfa = _write_predictions(detector, data.test_images, _test_names(data.test_files),
                                                 folder.path, epsilon, data.test_masks)
        metrics = _metric_table(maps, log_nfa, data.test_masks, data.test_labels, epsilon)
        _write_report(args, rows, folder.path, detector, epsilon, metrics)


def cmd_run(args):
    import numpy as np

    from .datasets import list_anomaly_folder, load_anomaly_folder, make_defects

    if args.folder is None:
        size = 256 if args.image_size == "auto" else args.image_size
        X, y, masks = make_defects(n_samples=args.n_synthetic, image_size=size, random_state=args.seed)
        # A quarter of the images, all good, to fit on; every other image to test on.
        trained = np.flatnonzero(y == 0)[: len(X) // 4]
        tested = np.setdiff1d(np.arange(len(X)), trained)
        names = [f"synthetic_{i:03d}" for i in tested]
        folder = _output_folder(args, names, [], model=True)
        train, test, test_masks, labels = X[trained], X[tested], masks[tested], y[tested]
        print(f"synthetic data: {len(train)} good training images, {len(test)} other test images")
    else:
        listing = list_anomaly_folder(args.folder)
        names = _test_names(listing.test_files)
        folder = _output_folder(args, names, listing.folders, model=True)
        data = load_anomaly_folder(args.folder, image_size=args.image_size)
        train, test, test_masks, labels = data.train_images, data.test_images, data.test_masks, data.test_labels
        print(f"{args.folder}: {len(train)} good training images, {0 if test is None else len(test)} test images")
    detector = _fit(args.detector, train)
    with folder:
        detector.save(folder.path / "model.uflow")
        if test is not None:
            rows, maps, log_nfa = _write_predictions(detector, test, names, folder.path, detector.epsilon,
                                                     test_masks)
            metrics = _metric_table(maps, log_nfa, test_masks, labels, detector.epsilon)
            _write_report(args, rows, folder.path, detector, detector.epsilon, metrics)


def _training_options(parser):
    parser.add_argument("--extractor", default="efficientnet_lite0",
                        choices=["efficientnet_lite0", "efficientnet_lite2", "resnet18", "wide_resnet50_2", "mscait"],
                        help="feature extractor (default: efficientnet_lite0, offline weights)")
    parser.add_argument("--image-size", nargs="+", default=["auto"], metavar="SIDE",
                        help="images are read at SIDE x SIDE, H x W, or auto (default): the training images' "
                             "shared aspect ratio at about 256x256 pixels, 256x256 when their aspect ratios "
                             "differ")
    parser.add_argument("--input-size", nargs="+", default=["auto"], metavar="SIDE",
                        help="backbone input size for CNNs: SIDE, H W, or auto (default): the images' aspect "
                             "ratio at about 256x256 pixels")
    parser.add_argument("--strides", type=int, nargs="+", metavar="STRIDE",
                        help="the CNN's feature maps the flow models, by stride, finest first (default: 4 8 16; "
                             "8 16 fits in about half the time, better on large defects, worse on small ones)")
    parser.add_argument("--pooling", type=int, nargs="+", metavar="SIDE",
                        help="CNN feature pooling window, one odd side for all scales or one per scale, finest "
                             "first (default: CNNFeatureTransformer's 'auto', 3 on every scale at input size 256, "
                             "none below)")
    parser.add_argument("--no-image-context", action="store_true",
                        help="the paper's flow: couplings do not see the image's mean features")
    for option, kind in (("--positional-encoding", int), ("--max-epochs", int), ("--batch-size", int),
                         ("--learning-rate", float)):
        parser.add_argument(option, type=kind, help="default: UFlowDetector's")
    parser.add_argument("--augmentation", choices=("auto", "none", "flips", "quarter_turns", "eight"),
                        help="also fit on turned copies of the training images (default: UFlowDetector's)")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="NFA threshold: the largest share of normal images with a detection, measured on "
                             "held-out images (default: UFlowDetector's, 0.05)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _output_options(parser):
    parser.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                        help="write report.html, a page of the results, most anomalous first (default: on)")
    parser.add_argument("--overwrite", action="store_true",
                        help="remove the files an earlier run recorded in the output folder, and only those, "
                             "first (default: refuse the folder)")


def build_parser():
    parser = argparse.ArgumentParser(prog="sklearn-uflow", description="U-Flow anomaly detection and segmentation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit on a folder of good images and write a model file")
    p.add_argument("good_dir", help="folder of defect-free images")
    p.add_argument("-o", "--output", required=True, help="model file to write, e.g. model.uflow")
    p.add_argument("--gray", action="store_true", help="read the images as grayscale")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing model file (never any other file; default: refuse it)")
    _training_options(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="write anomaly maps, masks, overlays and results.csv")
    p.add_argument("model", help="model file written by 'fit', or an .onnx file written by 'export'")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--epsilon", type=float, default=None, help="NFA threshold (default: the model's)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="score on the Dask cluster at this address, e.g. tcp://10.0.0.5:8786 (needs the "
                        "dask extra; the output folder must be shared with the workers)")
    _output_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--files-per-task", type=int, default=None,
                   help="files read and scored together (default: the model's scoring batch, 16)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="write a model file as one ONNX file for the torch-free runtime")
    p.add_argument("model", help="model file written by 'fit'")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--float-input", action="store_true",
                   help="the graph takes float images in [0, 1] (default: uint8 images)")
    p.add_argument("--overwrite", action="store_true", help="replace an ONNX file an earlier export wrote")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("evaluate", help="print the metric table on an MVTec-layout folder")
    p.add_argument("model", help="model file written by 'fit'")
    p.add_argument("dataset_dir", help="MVTec-layout folder (test/<type>, ground_truth/<type>)")
    p.add_argument("--epsilon", type=float, default=None, help="NFA threshold (default: the model's)")
    p.add_argument("-o", "--output", default=None,
                   help="also write maps, masks, overlays (with the true defects' contours), results.csv and "
                        "report.html to this folder")
    _output_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="fit on good images and write maps, masks and overlays (demo)")
    p.add_argument("folder", nargs="?", help="MVTec-layout folder (default: synthetic make_defects data)")
    p.add_argument("-o", "--output", default="uflow-output", help="output folder (default: uflow-output)")
    _output_options(p)
    p.add_argument("--n-synthetic", type=int, default=80, help="images of the synthetic demo")
    _training_options(p)
    p.set_defaults(func=cmd_run)
    return parser


def main(argv=None):
    """Run the ``sklearn-uflow`` command.

    The entry point of the ``sklearn-uflow`` console script, callable from
    Python with the arguments as a list: it returns the exit code rather than
    exiting, and reports bad input as one line on standard error.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments; default ``sys.argv[1:]``.

    Returns
    -------
    status : int
        The exit code: 0 on success, 1 when ``predict`` could not score
        some files, 2 on bad input, 130 or 143 when interrupted.

    See Also
    --------
    sklearn_uflow.batch.score_files : What ``predict`` runs.
    sklearn_uflow.UFlowDetector : What ``fit`` fits.

    Examples
    --------
    >>> from sklearn_uflow.cli import main
    >>> main(["--version"])  # doctest: +SKIP
    0
    """
    # First the handlers, then the arguments, then anything heavy: an interrupt at any moment gets its line.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    show_warning, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        args = build_parser().parse_args(argv)
        args.argv = ["sklearn-uflow", *(sys.argv[1:] if argv is None else argv)]
        _check_arguments(args)
        status = args.func(args)
    except KeyboardInterrupt:
        print("sklearn-uflow: interrupted; the files written are whole, and the run did not finish",
              file=sys.stderr)
        return 130
    except Terminated:
        print("sklearn-uflow: terminated; the files written are whole, and the run did not finish",
              file=sys.stderr)
        return 143
    except (CommandError, ValueError, OSError, RuntimeError, ImportError) as exc:
        print(f"sklearn-uflow: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = show_warning
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
