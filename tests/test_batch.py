import numpy as np
import pytest
from PIL import Image

from sklearn_uflow.batch import RESULT_COLUMNS, score_files


def test_score_files_gives_in_process_figures_and_reports_unreadable_files(fitted_detector, defects, tmp_path):
    X = defects[0][:5]
    for i, image in enumerate(X):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    (tmp_path / "5.png").write_bytes(b"not an image")
    files = sorted(tmp_path.glob("*.png"))
    rows = score_files(fitted_detector, files, tmp_path / "out", files_per_task=2)
    assert [row["image"] for row in rows] == [f"{i}" for i in range(6)]
    maps, log_nfa = fitted_detector.maps_and_log_nfa(X)
    for row, m, nfa in zip(rows, maps, log_nfa):
        assert row["error"] == ""
        assert row["max_anomaly_score"] == pytest.approx(float(m.max()), rel=1e-5)
        assert row["min_log10_nfa"] == pytest.approx(float(nfa.min()), rel=1e-5, abs=1e-6)
        assert row["decision"] == ("anomalous" if nfa.min() <= np.log10(fitted_detector.epsilon) else "normal")
    assert rows[5]["error"].startswith("could not read image")
    header = (tmp_path / "out/results.csv").read_text().splitlines()[0]
    assert header == ",".join(RESULT_COLUMNS)
    assert len(list((tmp_path / "out").glob("*_overlay.png"))) == 5


def test_outputs_come_back_at_each_files_own_size(fitted_detector, defects, tmp_path):
    from sklearn_uflow.datasets import read_image

    frame = fitted_detector.image_size_
    size = (frame[0] + 32, 2 * frame[1])  # another size and aspect ratio than the fit's frame
    X, y, _ = defects
    Image.fromarray(X[np.flatnonzero(y)[0]]).resize(size[::-1]).save(tmp_path / "wide.png")
    _, log_nfa = fitted_detector.maps_and_log_nfa(read_image(tmp_path / "wide.png", image_size=frame)[None])
    epsilon = fitted_detector.epsilon
    [row] = score_files(fitted_detector, [tmp_path / "wide.png"], tmp_path / "out")
    mask = np.asarray(Image.open(tmp_path / "out/wide_mask.png")) > 0
    assert mask.shape == size and Image.open(tmp_path / "out/wide_map.png").size == size[::-1]
    assert 0 < mask.mean() < 0.5  # a detected defect
    # Scored at the frame, the NFA map repeated onto the file's pixels (nearest, by the index formula).
    rows = np.floor((np.arange(size[0]) + 0.5) * frame[0] / size[0]).astype(int)
    cols = np.floor((np.arange(size[1]) + 0.5) * frame[1] / size[1]).astype(int)
    np.testing.assert_array_equal(mask, log_nfa[0][np.ix_(rows, cols)] <= np.log10(epsilon))
    assert row["min_log10_nfa"] == pytest.approx(float(log_nfa.min()), rel=1e-5, abs=1e-6)
