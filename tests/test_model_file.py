import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sklearn_uflow import UFlowDetector
from sklearn_uflow.model_file import FORMAT_VERSION, ModelFileError, _checksum, is_model_file


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
    # What fit -o may replace (with --overwrite): files whose header says sklearn-uflow wrote them.
    assert is_model_file(path) and is_model_file(tmp_path / "truncated.uflow")
    assert not any(is_model_file(tmp_path / name) for name in ("foreign.safetensors", "pickle.uflow", "missing"))
    (tmp_path / "pickle.uflow").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError):
        UFlowDetector.load(tmp_path / "pickle.uflow")


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _rewrite(path, target, forge=True, **metadata_changes):
    """Copy a model file with its metadata changed and, as a forger would (``forge``), its checksum recomputed."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    metadata.update(metadata_changes)
    if forge:
        metadata["checksum"] = _checksum(tensors, metadata)
    save_file(tensors, target, metadata=metadata)


def _fitted(path):
    import json
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["fitted"])


def test_an_edited_model_file_is_refused(saved, tmp_path):
    import json

    _, path, _ = saved
    fitted = _fitted(path)
    # An edit that would change decisions silently: the threshold's offset, the image size.
    for key, value in (("offset_", fitted["offset_"] + 1.0), ("image_size_", [64, 64])):
        _rewrite(path, tmp_path / "edited.uflow", forge=False, fitted=json.dumps({**fitted, key: value}))
        with pytest.raises(ModelFileError, match="checksum"):
            UFlowDetector.load(tmp_path / "edited.uflow")
    # Forged: the checksum recomputed. The structure is checked, and parts that do not fit are a ModelFileError
    # (not torch's RuntimeError).
    broken = {**fitted, "latent_shapes_": "wide", "n_channels_": 4}
    _rewrite(path, tmp_path / "broken.uflow", fitted=json.dumps(broken))
    with pytest.raises(ModelFileError, match="latent_shapes_, n_channels_ do not have the structure fit writes"):
        UFlowDetector.load(tmp_path / "broken.uflow")
    flow = {**fitted["flow_"], "n_steps": fitted["flow_"]["n_steps"] + 1}
    _rewrite(path, tmp_path / "architecture.uflow", fitted=json.dumps({**fitted, "flow_": flow}))
    with pytest.raises(ModelFileError, match="do not fit together"):
        UFlowDetector.load(tmp_path / "architecture.uflow")


def test_the_command_line_refuses_an_edited_model_with_one_line(saved, tmp_path):
    import json
    import subprocess
    import sys

    from PIL import Image

    _, path, X = saved
    _rewrite(path, tmp_path / "edited.uflow", forge=False,
             fitted=json.dumps({**_fitted(path), "offset_": 123.0}))
    Image.fromarray(X[0]).save(tmp_path / "a.png")
    result = subprocess.run([sys.executable, "-m", "sklearn_uflow.cli", "predict", str(tmp_path / "edited.uflow"),
                             str(tmp_path / "a.png"), "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2 and "checksum" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


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
