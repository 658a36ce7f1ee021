import os
from pathlib import Path

import numpy as np
import pytest

DATA_ENV = "SKLEARN_UFLOW_DATA"


@pytest.fixture(scope="session")
def data_dir():
    """The folder of real datasets (``$SKLEARN_UFLOW_DATA``, set by .ci/run)."""
    path = os.environ.get(DATA_ENV)
    if not path or not Path(path).is_dir():
        pytest.skip(f"real datasets not available: set {DATA_ENV} to the folder holding mpdd/, "
                    "magnetic_tile/ and hazelnut_toy/")
    return Path(path)


@pytest.fixture(scope="session")
def defects():
    from sklearn_uflow.datasets import make_defects

    return make_defects(n_samples=32, image_size=64, random_state=0)


@pytest.fixture(scope="session")
def small_extractor():
    from sklearn_uflow import CNNFeatureTransformer

    return CNNFeatureTransformer(input_size=64, device="cpu")


@pytest.fixture(scope="session")
def fitted_detector(defects, small_extractor):
    from sklearn_uflow import UFlowDetector

    X, y, _ = defects
    return UFlowDetector(small_extractor, max_epochs=3, random_state=0, device="cpu").fit(X[y == 0])


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """A small fitted detector, the model file it was saved to, and images."""
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
    from sklearn_uflow.datasets import make_defects

    X, y, _ = make_defects(n_samples=16, image_size=32, random_state=0)
    detector = UFlowDetector(CNNFeatureTransformer(input_size=32), positional_encoding=2, augmentation="flips",
                             max_epochs=1, random_state=0, device="cpu").fit(X[y == 0])
    path = tmp_path_factory.mktemp("model") / "model.uflow"
    detector.save(path)
    return detector, path, X


@pytest.fixture
def rng():
    return np.random.default_rng(0)
