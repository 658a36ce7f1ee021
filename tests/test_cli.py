import subprocess
import sys
import tempfile

import numpy as np
import pytest

from sklearn_uflow import UFlowDetector
from sklearn_uflow.model_file import load_detector

CLI = [sys.executable, "-m", "sklearn_uflow.cli"]


def _cli(*args):
    # In a folder of its own: what the README's first command leaves in the working folder (uflow-output/) must
    # not change what a test sees.
    with tempfile.TemporaryDirectory() as folder:
        return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=900, cwd=folder)


def test_fit_predict_evaluate_on_real_folder(data_dir, tmp_path):
    category = data_dir / "hazelnut_toy/hazelnut_toy"
    model = tmp_path / "model.uflow"
    fit = _cli("fit", category / "train/good", "-o", model, "--image-size", 64, "--input-size", 64,
               "--max-epochs", 2, "--strides", 8, 16, "--pooling", 3, 1, "--no-image-context",
               "--positional-encoding", 1, "--augmentation", "flips", "--quiet")
    assert fit.returncode == 0, fit.stderr
    assert "fitted on 28 images" in fit.stdout and model.is_file()
    # Options given on the command line are used; the others keep the detector's defaults.
    params = load_detector(model).get_params()
    assert params["augmentation"] == "flips" and load_detector(model).augmentation_ == "flips"
    assert params["max_epochs"] == 2 and params["extractor__pooling"] == (3, 1)
    assert params["extractor__strides"] == (8, 16)
    assert params["image_context"] is False and params["positional_encoding"] == 1
    assert params["learning_rate"] == UFlowDetector().learning_rate
    assert params["batch_size"] == UFlowDetector().batch_size

    out = tmp_path / "out"
    predict = _cli("predict", model, category / "test/good", category / "test/colour", "-o", out)
    assert predict.returncode == 0, predict.stderr
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert rows[0] == "image,max_anomaly_score,decision,min_log10_nfa,n_regions,error" and len(rows) == 1 + 23
    for kind in ("map", "mask", "overlay"):
        assert len(list(out.glob(f"*_{kind}.png"))) == 23

    evaluate = _cli("evaluate", model, category)
    assert evaluate.returncode == 0, evaluate.stderr
    table = dict(line.rsplit("  ", 1) for line in evaluate.stdout.strip().splitlines())
    table = {key.strip(): value.strip() for key, value in table.items()}
    assert table["images (good / defective)"] == "6 / 17"
    # the table's figures are those of the library on the same model and folder
    from sklearn_uflow.datasets import load_anomaly_folder
    from sklearn_uflow.metrics import aupro, image_roc_auc, mean_iou, pixel_roc_auc

    detector = load_detector(model)
    data = load_anomaly_folder(category, image_size=detector.image_size_)
    maps, log_nfa = detector.maps_and_log_nfa(data.test_images)
    expected = {"pixel ROC AUC": pixel_roc_auc(data.test_masks, maps),
                "AUPRO (FPR <= 0.3)": aupro(data.test_masks, maps),
                "mIoU at epsilon=0.05": mean_iou(data.test_masks, log_nfa <= np.log10(0.05)),
                "image ROC AUC (max of map)": image_roc_auc(data.test_labels, maps.max(axis=(1, 2)))}
    assert {key: table[key] for key in expected} == {key: f"{value:.4f}" for key, value in expected.items()}
    assert table["good images with a detection"].endswith("%")
    for bad in ("0", "-1", "nan"):  # not the model's, not "nothing is anomalous": refused
        refused = _cli("evaluate", model, category, "--epsilon", bad)
        assert refused.returncode == 2 and "--epsilon must be a number above 0" in refused.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("fit", "/nonexistent", "-o", "m.uflow"), "no such file or folder"),
        (("predict", "/nonexistent.uflow", ".", "-o", "out"), "no model file"),
        (("evaluate", "/nonexistent.uflow", "."), "no model file"),
        (("run", "/nonexistent"), "no such folder"),
    ],
)
def test_bad_input_exits_with_one_line(args, message):
    result = _cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreadable_image_is_reported(tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "good/a.png").write_bytes(b"not an image")
    result = _cli("fit", tmp_path / "good", "-o", tmp_path / "m.uflow")
    assert result.returncode == 2 and "could not read image" in result.stderr


def test_help_everywhere():
    for command in ([], ["fit"], ["predict"], ["evaluate"], ["run"]):
        result = _cli(*command, "--help")
        assert result.returncode == 0 and "usage: sklearn-uflow" in result.stdout


def test_predict_scores_what_it_can_and_exits_with_1(saved, tmp_path):
    from PIL import Image

    _, path, X = saved
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(X[i]).save(folder / f"{i}.png")
    (folder / "2.png").write_bytes(b"truncated")
    result = _cli("predict", path, folder, "-o", tmp_path / "out")
    assert result.returncode == 1 and "1 of 3 files failed" in result.stderr
    rows = (tmp_path / "out/results.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[3].startswith("2,,,,,could not read image")
    assert len(list((tmp_path / "out").glob("*_mask.png"))) == 2


@pytest.mark.parametrize("values, expected", [(["64"], 64), (["48", "64"], (48, 64)), (["auto"], "auto")])
def test_input_size_option(values, expected):
    from sklearn_uflow.cli import _make_extractor, build_parser

    args = build_parser().parse_args(["fit", "good", "-o", "m.uflow", "--input-size", *values])
    assert _make_extractor(args).input_size == expected


def test_size_options_name_themselves_when_wrong():
    from sklearn_uflow.cli import CommandError, _size

    with pytest.raises(CommandError, match=r"--image-size takes SIDE, H W \(positive integers\) or auto"):
        _size(["256", "wide"], "--image-size")


def test_default_sizes_keep_the_aspect_ratio_of_strips(tmp_path):
    import numpy as np
    from PIL import Image

    from sklearn_uflow.cli import main

    rng = np.random.default_rng(0)
    (tmp_path / "good").mkdir()
    for i in range(4):  # steel-strip-like images, 2.5 times wider than high
        Image.fromarray(rng.integers(0, 256, (60, 150, 3), dtype=np.uint8)).save(tmp_path / f"good/{i}.png")
    assert main(["fit", str(tmp_path / "good"), "-o", str(tmp_path / "m.uflow"), "--max-epochs", "1", "--quiet"]) == 0
    detector = load_detector(tmp_path / "m.uflow")
    assert detector.image_size_ == (160, 400) and detector.extractor_.input_size_ == (160, 400)
