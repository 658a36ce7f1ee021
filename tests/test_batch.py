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
