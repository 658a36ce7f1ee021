"""The ONNX export and the torch-free runtime score as the detector does."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
from sklearn_uflow.datasets import load_anomaly_folder, make_defects

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from sklearn_uflow import runtime  # noqa: E402
from sklearn_uflow.cli import main  # noqa: E402
from sklearn_uflow.export import export_onnx  # noqa: E402

MAP_TOLERANCE = 1e-4


def _assert_same_scoring(detector, exported, X):
    maps, log_nfa = detector.maps_and_log_nfa(X)
    exported_maps, exported_log_nfa = exported.maps_and_log_nfa(X)
    np.testing.assert_allclose(exported_maps, maps, atol=MAP_TOLERANCE, rtol=0)
    threshold = np.log10(detector.epsilon)
    np.testing.assert_array_equal(exported_log_nfa <= threshold, log_nfa <= threshold)
    np.testing.assert_array_equal(exported.predict(X), detector.predict(X))
    np.testing.assert_allclose(exported.score_samples(X), detector.score_samples(X), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(exported.anomaly_maps(X[:1]), maps[:1], atol=MAP_TOLERANCE, rtol=0)  # any batch


@pytest.mark.parametrize("backbone, crop", [("efficientnet_lite0", None), ("efficientnet_lite2", None),
                                           ("efficientnet_lite0", (8, 56))],
                         ids=["lite0", "lite2", "lite0-oblong"])
def test_the_export_scores_as_the_detector(backbone, crop, tmp_path):
    X, y, _ = make_defects(n_samples=32, image_size=64, random_state=0)
    if crop:
        X = np.ascontiguousarray(X[:, crop[0]:crop[1]])  # 48 x 64: an oblong input size
    detector = UFlowDetector(CNNFeatureTransformer(backbone, input_size=X.shape[1:3], device="cpu"),
                             max_epochs=2, random_state=0, device="cpu").fit(X[y == 0])
    path = export_onnx(detector, tmp_path / "detector.onnx")
    exported = runtime.load(path)
    assert exported.image_size_ == detector.image_size_ and exported.epsilon == detector.epsilon
    _assert_same_scoring(detector, exported, X)
    assert (exported.predict(X) == -1).any() and (exported.predict(X) == 1).any()  # both decisions occur


def test_the_export_of_the_demo_scores_as_the_detector(saved_demo):
    """The README's demo settings (Lite0, 256x256, default training) on its synthetic images."""
    detector, path, X = saved_demo
    _assert_same_scoring(detector, runtime.load(path), X)


@pytest.fixture(scope="module")
def saved_demo(tmp_path_factory):
    X, y, _ = make_defects(n_samples=40, image_size=256, random_state=0)
    good = np.flatnonzero(y == 0)
    detector = UFlowDetector("efficientnet_lite0", augmentation="none", max_epochs=4, random_state=0,
                             device="cpu").fit(X[good[:12]])
    path = export_onnx(detector, tmp_path_factory.mktemp("demo") / "demo.onnx")
    return detector, path, X[np.setdiff1d(np.arange(len(X)), good[:12])]


def test_real_images_score_as_with_the_detector(data_dir, tmp_path):
    data = load_anomaly_folder(data_dir / "hazelnut_toy" / "hazelnut_toy", image_size=128)
    detector = UFlowDetector(CNNFeatureTransformer(device="cpu"), augmentation="none", max_epochs=2, random_state=0,
                             device="cpu").fit(data.train_images)
    _assert_same_scoring(detector, runtime.load(export_onnx(detector, tmp_path / "hazelnut.onnx")),
                         data.test_images)


def test_epsilon_is_set_at_load_or_per_call(saved_demo):
    detector, path, X = saved_demo
    strict = runtime.load(path, epsilon=1e-6)
    log_nfa = detector.log_nfa_maps(X)
    np.testing.assert_array_equal(strict.predict_masks(X), log_nfa <= -6)
    np.testing.assert_array_equal(strict.predict(X), np.where(log_nfa.min(axis=(1, 2)) <= -6, -1, 1))
    np.testing.assert_array_equal(strict.predict_masks(X, epsilon=0.5), log_nfa <= np.log10(0.5))
    with pytest.raises(ValueError, match="epsilon"):
        runtime.load(path, epsilon=0)


#: What the runtime extra does not install: a process where importing them fails stands for its install.
ABSENT = ("torch", "sklearn", "skimage", "joblib", "timm", "FrEIA", "tqdm", "matplotlib")


def _without_the_full_install(code):
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in ABSENT)
    return subprocess.run([sys.executable, "-c", f"import sys\n{blocked}{textwrap.dedent(code)}"],
                          capture_output=True, text=True)


def test_the_runtime_runs_without_the_full_install(saved_demo, tmp_path):
    detector, path, X = saved_demo
    np.save(tmp_path / "images.npy", X[:3])
    done = _without_the_full_install(f"""
        import numpy as np
        from sklearn_uflow import runtime
        exported = runtime.load({str(path)!r})
        np.save({str(tmp_path / "masks.npy")!r}, exported.predict_masks(np.load({str(tmp_path / "images.npy")!r})))
    """)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "masks.npy"), detector.predict_masks(X[:3]))


def test_the_command_line_predicts_from_onnx_without_the_full_install(saved, tmp_path):
    """On the inspection PC: `sklearn-uflow predict model.onnx` writes what the full install writes."""
    from PIL import Image

    detector, model, X = saved
    images = tmp_path / "images"
    images.mkdir()
    for i, image in enumerate(X[:3]):
        Image.fromarray(image).save(images / f"{i}.png")
    onnx_path = export_onnx(detector, tmp_path / "model.onnx")
    done = _without_the_full_install(f"""
        from sklearn_uflow.cli import main
        sys.exit(main(["predict", {str(onnx_path)!r}, {str(images)!r}, "-o", {str(tmp_path / "out")!r}]))
    """)
    assert done.returncode == 0, done.stderr
    assert main(["predict", str(onnx_path), str(images), "-o", str(tmp_path / "full"), "--quiet"]) == 0
    for i in range(3):
        for kind in ("mask", "map"):
            np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / f"{i}_{kind}.png")),
                                          np.asarray(Image.open(tmp_path / "full" / f"{i}_{kind}.png")))
    assert (tmp_path / "out" / "report.html").is_file()


def test_a_changed_or_foreign_file_is_refused(saved_demo, tmp_path):
    import onnx

    _, path, _ = saved_demo
    payload = bytearray(open(path, "rb").read())
    payload[len(payload) // 2] ^= 1  # one bit of the weights
    changed = tmp_path / "changed.onnx"
    changed.write_bytes(bytes(payload))
    with pytest.raises(runtime.ExportedModelError, match="changed after export|not a readable"):
        runtime.load(changed)
    model = onnx.load(path)
    del model.metadata_props[:]
    onnx.save(model, tmp_path / "foreign.onnx")
    with pytest.raises(runtime.ExportedModelError, match="not one sklearn-uflow exported"):
        runtime.load(tmp_path / "foreign.onnx")
    assert runtime.is_exported_model(path) and not runtime.is_exported_model(tmp_path / "foreign.onnx")
    # an edited threshold in the metadata is a changed file too
    model = onnx.load(path)
    entry = next(p for p in model.metadata_props if p.key == runtime.METADATA_KEY)
    entry.value = json.dumps({**json.loads(entry.value), "epsilon": 10.0})
    onnx.save(model, tmp_path / "edited.onnx")
    with pytest.raises(runtime.ExportedModelError, match="changed after export"):
        runtime.load(tmp_path / "edited.onnx")


def test_the_command_line_exports_and_predicts_from_onnx(saved, tmp_path, capsys):
    """predict writes the same files from the .onnx as from the model file: same masks, maps within 1e-4."""
    from PIL import Image

    detector, model, X = saved
    images = tmp_path / "images"
    images.mkdir()
    for i, image in enumerate(X[:4]):
        Image.fromarray(image).save(images / f"{i}.png")
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(model), "-o", str(onnx_path)]) == 0
    assert main(["export", str(model), "-o", str(onnx_path)]) == 2  # exists: refused without --overwrite
    assert main(["export", str(model), "-o", str(onnx_path), "--overwrite"]) == 0
    assert main(["export", str(model), "-o", str(tmp_path / "model.bin")]) == 2
    user_file = tmp_path / "notes.onnx"
    user_file.write_bytes(b"mine")
    assert main(["export", str(model), "-o", str(user_file), "--overwrite"]) == 2
    assert user_file.read_bytes() == b"mine"
    for name, source in (("from_model", model), ("from_onnx", onnx_path)):
        assert main(["predict", str(source), str(images), "-o", str(tmp_path / name), "--quiet"]) == 0
    for i in range(4):
        masks = [np.asarray(Image.open(tmp_path / name / f"{i}_mask.png")) for name in ("from_model", "from_onnx")]
        np.testing.assert_array_equal(*masks)
    rows = [(tmp_path / name / "results.csv").read_text().splitlines() for name in ("from_model", "from_onnx")]
    decisions = [[line.split(",")[2] for line in table] for table in rows]
    assert decisions[0] == decisions[1]
    capsys.readouterr()


def test_the_exported_detector_pickles(saved_demo):
    """A Dask cluster sends the detector to its workers by pickle."""
    import pickle

    _, path, X = saved_demo
    exported = runtime.load(path, epsilon=0.2)
    copy = pickle.loads(pickle.dumps(exported))
    assert copy.epsilon == 0.2
    np.testing.assert_array_equal(copy.log_nfa_maps(X[:2]), exported.log_nfa_maps(X[:2]))


def test_the_runtime_refuses_images_it_was_not_exported_for(saved_demo):
    _, path, X = saved_demo
    exported = runtime.load(path)
    with pytest.raises(ValueError, match="exported for uint8 images"):
        exported.anomaly_maps(X[:1] / 255.0)
    with pytest.raises(ValueError, match="images are 128x256, but the estimator was fitted on 256x256 images"):
        exported.anomaly_maps(X[:1, :128])


def test_without_the_full_install_the_estimators_name_the_extra():
    done = _without_the_full_install("""
        try:
            from sklearn_uflow import UFlowDetector
        except ImportError as exc:
            print(exc)
    """)
    assert 'needs the full install' in done.stdout and 'pip install "sklearn-uflow[full]"' in done.stdout


def test_images_larger_than_the_backbone_input_export_through_torch_export(tmp_path):
    """Downscaling to the input size is antialiased, which only the torch.export-based exporter writes (as
    MS-CaiT's second branch needs it too)."""
    X, y, _ = make_defects(n_samples=24, image_size=64, random_state=0)
    detector = UFlowDetector(CNNFeatureTransformer(input_size=32, device="cpu"), augmentation="none", max_epochs=1,
                             random_state=0, device="cpu").fit(X[y == 0])
    _assert_same_scoring(detector, runtime.load(export_onnx(detector, tmp_path / "small.onnx")), X)
