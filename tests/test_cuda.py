"""The detector on a CUDA GPU: skipped on machines without one (CI's), run on
a GPU machine. ``benchmarks/bench_gpu.py`` measures its speed and memory there."""

import pickle

import numpy as np
import pytest
import torch

from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
from sklearn_uflow.metrics import image_roc_auc, pixel_roc_auc

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@pytest.fixture(scope="module")
def cuda_detector(defects):
    X, y, _ = defects
    extractor = CNNFeatureTransformer(input_size=64)
    return UFlowDetector(extractor, max_epochs=8, random_state=0, device="cuda").fit(X[y == 0])


def test_fits_and_finds_defects_on_cuda(cuda_detector, defects):
    X, y, masks = defects
    assert cuda_detector.device_.type == cuda_detector.extractor_.device_.type == "cuda"
    assert all(p.is_cuda for p in cuda_detector.flow_.parameters())
    maps = cuda_detector.anomaly_maps(X)
    # The bounds of the CPU's test_it_finds_synthetic_defects, same data and settings.
    assert pixel_roc_auc(masks, maps) > 0.9
    assert image_roc_auc(y, maps.max(axis=(1, 2))) > 0.9
    assert cuda_detector.predict_masks(X).shape == masks.shape


def test_cuda_model_loads_and_scores_on_cpu(cuda_detector, defects, monkeypatch, tmp_path):
    X = defects[0][:4]
    blob = pickle.dumps(cuda_detector)
    cuda_detector.save(tmp_path / "model.uflow")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="CUDA"):
        unpickled = pickle.loads(blob)
    loaded = UFlowDetector.load(tmp_path / "model.uflow")
    monkeypatch.undo()
    # cuDNN convolutions default to TF32 (10-bit mantissa) on Ampere and newer GPUs, which moves
    # the maps by about 1e-3; in full float32 the GPU and the CPU agree up to rounding.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    expected = cuda_detector.anomaly_maps(X)
    for restored in (unpickled, loaded):
        assert restored.device_.type == restored.extractor_.device_.type == "cpu"
        np.testing.assert_allclose(restored.anomaly_maps(X), expected, atol=1e-4)
