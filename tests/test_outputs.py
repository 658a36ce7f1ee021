"""Outputs a user can trust: whole files, one run per folder, outputs checked before any work (the
progress bars are checked by ``test_report.py::test_run_end_to_end``)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from sklearn_uflow import UFlowDetector
from sklearn_uflow._files import OutputExistsError, atomic_path, prepare_output_dir
from sklearn_uflow.cli import main


def _images(folder, X, n):
    folder.mkdir(exist_ok=True)
    for i in range(n):
        Image.fromarray(X[i % len(X)]).save(folder / f"{i:03d}.png")
    return folder


def _one_line(captured):
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_a_folder_holding_another_runs_outputs_is_refused_or_cleared(saved, tmp_path, capsys):
    _, model, X = saved
    images, out = _images(tmp_path / "images", X, 3), tmp_path / "out"
    assert main(["predict", str(model), str(images), "-o", str(out), "--quiet"]) == 0
    # an earlier run into the same folder, with an image the new run does not have
    (out / "zzz_overlay.png").write_bytes((out / "000_overlay.png").read_bytes())
    (out / "notes.txt").write_text("the user's own file")
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert main(["predict", str(model), str(images / "000.png"), "-o", str(out), "--quiet"]) == 2
    assert "--overwrite" in _one_line(capsys.readouterr())
    assert sorted(p.name for p in out.iterdir()) == before  # nothing touched
    assert main(["predict", str(model), str(images / "000.png"), "-o", str(out), "--quiet", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000_map.png", "000_mask.png", "000_overlay.png", "notes.txt",
                                                    "report.html", "results.csv"]


def test_score_files_follows_the_same_rule(saved, tmp_path):
    from sklearn_uflow.batch import score_files

    detector, _, X = saved
    files = sorted(_images(tmp_path / "images", X, 2).iterdir())
    score_files(detector, files, tmp_path / "out")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        score_files(detector, files[:1], tmp_path / "out")
    rows = score_files(detector, files[:1], tmp_path / "out", overwrite=True)
    assert len(rows) == 1 and not (tmp_path / "out/001_map.png").exists()


@pytest.mark.parametrize("output", ["missing/model.uflow", "folder"])
def test_fit_checks_its_output_before_training(tmp_path, monkeypatch, capsys, saved, output):
    (tmp_path / "folder").mkdir()
    images = _images(tmp_path / "images", saved[2], 3)
    monkeypatch.setattr(UFlowDetector, "fit", lambda *a, **k: pytest.fail("trained before checking the output"))
    assert main(["fit", str(images), "-o", str(tmp_path / output), "--quiet"]) == 2
    line = _one_line(capsys.readouterr())
    assert ("no such folder" in line) if output.startswith("missing") else ("is a folder" in line)


@pytest.mark.parametrize("command", ["predict", "run", "evaluate"])
def test_folder_outputs_are_checked_before_any_work(tmp_path, monkeypatch, capsys, saved, command):
    _, model, X = saved
    (tmp_path / "a_file").write_text("")
    monkeypatch.setattr(UFlowDetector, "load", lambda *a, **k: pytest.fail("loaded before checking the output"))
    monkeypatch.setattr(UFlowDetector, "fit", lambda *a, **k: pytest.fail("trained before checking the output"))
    args = {"predict": ["predict", str(model), str(_images(tmp_path / "images", X, 1))],
            "run": ["run"], "evaluate": ["evaluate", str(model), str(tmp_path)]}[command]
    assert main([*args, "-o", str(tmp_path / "a_file")]) == 2
    assert "is a file" in _one_line(capsys.readouterr())


def test_an_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    from sklearn_uflow.batch import _save_png

    def interrupted(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _save_png(np.zeros((4, 4), np.uint8), tmp_path / "a_map.png")
    assert list(tmp_path.iterdir()) == []


def test_files_get_the_permissions_of_the_umask(saved, tmp_path):
    detector = saved[0]
    for umask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        before = os.umask(umask)
        try:
            detector.save(tmp_path / f"{umask:o}.uflow")
            with atomic_path(tmp_path / f"{umask:o}.csv") as temporary:
                open(temporary, "w").close()
        finally:
            os.umask(before)
        for suffix in ("uflow", "csv"):
            assert (tmp_path / f"{umask:o}.{suffix}").stat().st_mode & 0o777 == mode


def test_prepare_output_dir_removes_only_run_outputs(tmp_path):
    for name in ("results.csv", "report.html", "model.uflow", "a_map.png", "a_mask.png", "a_overlay.png",
                 ".a_map.png.x1.part", "photo.png", "notes.txt"):
        (tmp_path / name).write_text("")
    with pytest.raises(OutputExistsError, match="7 files"):
        prepare_output_dir(tmp_path)
    prepare_output_dir(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "photo.png"]


# A predict whose PNG writer is slowed down, so that a signal lands in the middle of the run.
SLOW_PREDICT = """
import sys, time
from sklearn_uflow import batch
save = batch._save_png
batch._save_png = lambda array, path: (time.sleep(0.02), save(array, path))
from sklearn_uflow.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_predict_with_one_line_and_whole_files(saved, tmp_path, signum, status):
    _, model, X = saved
    images, out = _images(tmp_path / "images", X, 120), tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_PREDICT, "predict", str(model), str(images), "-o", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a background job of a shell ignores SIGINT, and a child inherits that: restore the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while len(list(out.glob("*_overlay.png"))) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr
    assert len(stderr.strip().splitlines()) == 1 and "did not finish" in stderr
    written = sorted(out.iterdir())
    assert 30 <= len(written) < 3 * 120  # stopped midway
    assert not (out / "results.csv").exists() and not (out / "report.html").exists()
    for path in written:  # every file there is a whole PNG, and no temporary one is left
        assert path.suffix == ".png"
        with Image.open(path) as image:
            image.load()
