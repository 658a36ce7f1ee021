import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
from sklearn_uflow.model_file import FORMAT_VERSION, ModelFileError, load_detector

CLI = [sys.executable, "-m", "sklearn_uflow.cli"]


def _cli(*args):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=900)


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
    for key in ("pixel ROC AUC", "AUPRO (FPR <= 0.3)", "mIoU at epsilon=1", "image ROC AUC (max of map)"):
        assert 0 <= float(table[key]) <= 1
    assert table["good images with a detection"].endswith("%")


@pytest.mark.parametrize(
    "args, message",
    [
        (("fit", "/nonexistent", "-o", "m.uflow"), "no such file or folder"),
        (("predict", "/nonexistent.uflow", ".", "-o", "out"), "no model file"),
        (("evaluate", "/nonexistent.uflow", "."), "no model file"),
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


# ------------------------------------------------------------------ model files
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from sklearn_uflow.datasets import make_defects

    X, y, _ = make_defects(n_samples=16, image_size=32, random_state=0)
    detector = UFlowDetector(CNNFeatureTransformer(input_size=32), positional_encoding=2, augmentation="flips",
                             max_epochs=1, random_state=0, device="cpu").fit(X[y == 0])
    path = tmp_path_factory.mktemp("model") / "model.uflow"
    detector.save(path)
    return detector, path, X


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


def test_save_load_round_trip(saved):
    detector, path, X = saved
    loaded = UFlowDetector.load(path)
    np.testing.assert_array_equal(loaded.anomaly_maps(X), detector.anomaly_maps(X))
    np.testing.assert_array_equal(loaded.log_nfa_maps(X), detector.log_nfa_maps(X))
    assert loaded.get_params()["extractor__input_size"] == 32
    assert loaded.augmentation_ == detector.augmentation_ == "flips"
    assert loaded.segmenter_.null_ == detector.segmenter_.null_
    assert loaded.segmenter_.map_level_ == detector.segmenter_.map_level_


def test_truncated_corrupted_and_foreign_files_are_refused(saved, tmp_path):
    _, path, _ = saved
    data = path.read_bytes()
    (tmp_path / "truncated.uflow").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a readable model file"):
        UFlowDetector.load(tmp_path / "truncated.uflow")
    flipped = bytearray(data)
    flipped[-100] ^= 0xFF  # inside the last tensor's bytes
    (tmp_path / "flipped.uflow").write_bytes(bytes(flipped))
    with pytest.raises(ModelFileError, match="checksum"):
        UFlowDetector.load(tmp_path / "flipped.uflow")
    save_file({"w": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(ModelFileError, match="not an sklearn-uflow model file"):
        UFlowDetector.load(tmp_path / "foreign.safetensors")
    (tmp_path / "pickle.uflow").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError):
        UFlowDetector.load(tmp_path / "pickle.uflow")


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _rewrite(path, target, **metadata_changes):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    metadata.update(metadata_changes)
    save_file(tensors, target, metadata=metadata)


def test_pickle_payloads_are_never_executed(saved, tmp_path):
    _, path, _ = saved
    marker = tmp_path / "executed"
    payload = pickle.dumps(_Payload(marker)).decode("latin-1")
    # a pickle in the JSON sections
    _rewrite(path, tmp_path / "in_params.uflow", params=payload)
    with pytest.raises(ModelFileError, match="unreadable parameters"):
        UFlowDetector.load(tmp_path / "in_params.uflow")
    # code named as the feature step's class
    import json
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        params = json.loads(handle.metadata()["params"])
    params["extractor"] = {"class": "builtins.open", "params": {"file": str(marker)}}
    _rewrite(path, tmp_path / "in_class.uflow", params=json.dumps(params))
    with pytest.raises(ModelFileError, match="unknown feature step"):
        UFlowDetector.load(tmp_path / "in_class.uflow")
    # a pickle as a tensor's bytes is only ever read as numbers
    tensors = {"payload": torch.frombuffer(bytearray(payload.encode("latin-1")), dtype=torch.uint8)}
    save_file(tensors, tmp_path / "in_tensor.uflow", metadata={"format": "sklearn-uflow-detector"})
    with pytest.raises(ModelFileError):
        UFlowDetector.load(tmp_path / "in_tensor.uflow")
    assert not marker.exists()


def test_other_format_version_is_explained(saved, tmp_path):
    _, path, _ = saved
    _rewrite(path, tmp_path / "v99.uflow", format_version="99")
    with pytest.raises(ModelFileError, match=f"format '99'.*reads format {FORMAT_VERSION}"):
        UFlowDetector.load(tmp_path / "v99.uflow")
