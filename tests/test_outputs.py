"""Outputs a user can trust: a run removes or replaces only what a run recorded, never writes into its inputs,
checks every argument before anything else, holds its folder alone, and leaves whole files (the progress bars are
checked by ``test_report.py::test_run_end_to_end``). The data-loss tests compare checksums of the user's files
before and after."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from sklearn_uflow import UFlowDetector
from sklearn_uflow import cli
from sklearn_uflow.outputs import (RECORD, FolderInUseError, OutputExistsError, OutputFolder, StaleLockWarning,
                                  atomic_path, read_record)
from sklearn_uflow.cli import main


def _images(folder, X, n):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(X[i % len(X)]).save(folder / f"{i:03d}.png")
    return folder


def _one_line(captured):
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def _checksums(folder):
    """Every file under ``folder``, by relative path, with the SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _users_folder(folder, model):
    """A folder of a user's own files, some named like a run's outputs (one a real model file)."""
    folder.mkdir()
    for name in ("notes.txt", "photo.png", "city_map.png", "part7_mask.png", ".thesis.tex.part", "results.csv",
                 "report.html"):
        (folder / name).write_text(f"the user's {name}")
    (folder / "model.uflow").write_bytes(model.read_bytes())
    return folder


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_folder_of_the_users_own_files_is_never_touched(saved, tmp_path, capsys, overwrite):
    _, model, X = saved
    images = _images(tmp_path / "images", X, 2)
    home = _users_folder(tmp_path / "home", model)
    before = _checksums(home)
    assert main(["predict", str(model), str(images), "-o", str(home), "--quiet", *overwrite]) == 2
    line = _one_line(capsys.readouterr())
    assert "no sklearn-uflow run wrote" in line and "--overwrite" not in line
    assert _checksums(home) == before


def test_overwrite_removes_exactly_what_the_earlier_run_recorded(saved, tmp_path, capsys):
    _, model, X = saved
    images, out = _images(tmp_path / "images", X, 3), tmp_path / "out"
    assert main(["predict", str(model), str(images), "-o", str(out), "--quiet"]) == 0
    record = read_record(out)
    assert record["finished"] is not None and record["command"][:2] == ["sklearn-uflow", "predict"]
    assert record["files"] == {p.name: p.stat().st_size for p in out.iterdir() if not p.name.startswith(".")}
    assert len(record["files"]) == 3 * 3 + 2
    (out / "notes.txt").write_text("the user's own file, written beside the outputs")
    before = _checksums(out)
    capsys.readouterr()
    assert main(["predict", str(model), str(images / "000.png"), "-o", str(out), "--quiet"]) == 2
    assert "--overwrite" in _one_line(capsys.readouterr())
    assert _checksums(out) == before  # nothing touched

    assert main(["predict", str(model), str(images / "000.png"), "-o", str(out), "--quiet", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "000_map.png", "000_mask.png", "000_overlay.png",
                                                    "notes.txt", "report.html", "results.csv"]
    assert _checksums(out)["notes.txt"] == before["notes.txt"]
    assert set(read_record(out)["files"]) == {"000_map.png", "000_mask.png", "000_overlay.png", "report.html",
                                              "results.csv"}


def test_a_recorded_file_changed_since_and_a_clash_are_kept(saved, tmp_path, capsys):
    _, model, X = saved
    images, out = _images(tmp_path / "images", X, 2), tmp_path / "out"
    assert main(["predict", str(model), str(images), "-o", str(out), "--quiet"]) == 0
    with open(out / "results.csv", "a") as f:
        f.write("a line the user added\n")
    before = _checksums(out)
    capsys.readouterr()
    assert main(["predict", str(model), str(images), "-o", str(out), "--quiet", "--overwrite"]) == 2
    assert "changed after the run that wrote it" in _one_line(capsys.readouterr())
    assert _checksums(out) == before

    # A file of the user's, in a run's folder, named as one the next run writes.
    (out / "results.csv").unlink()
    (out / "results.csv").write_text("the user's own table")
    before = _checksums(out)
    assert main(["predict", str(model), str(images), "-o", str(out), "--quiet", "--overwrite"]) == 2
    assert _checksums(out) == before


def test_an_interrupted_run_is_recognised_and_cleared_by_overwrite(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), OutputFolder(out, ["a_map.png", "results.csv"], command="test"):
        (out / "a_map.png").write_text("written")
        (out / ".results.csv.x1y2.part").write_text("a temporary file a killed run left")
        raise KeyboardInterrupt
    record = read_record(out)
    assert record["finished"] is None and record["files"] == {"a_map.png": None, "results.csv": None}
    with pytest.raises(OutputExistsError, match="earlier run"):
        OutputFolder(out, ["results.csv"]).check()
    (out / "notes.txt").write_text("the user's")
    with OutputFolder(out, ["results.csv"], overwrite=True):
        (out / "results.csv").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "notes.txt", "results.csv"]


def _recorded_folder(folder, files):
    """A folder written by a recorded run: ``files`` maps names to bytes."""
    with OutputFolder(folder, list(files), command="test"):
        for name, data in files.items():
            (folder / name).write_bytes(data)
    return folder


def _dataset(root, X):
    """A tiny MVTec-layout folder."""
    for sub, n in (("train/good", 3), ("test/good", 1), ("test/crack", 1)):
        _images(root / sub, X, n)
    (root / "ground_truth/crack").mkdir(parents=True)
    Image.fromarray(np.full(X.shape[1:3], 255, np.uint8)).save(root / "ground_truth/crack/000_mask.png")
    return root


@pytest.mark.parametrize("case", ["predict into the model's run folder", "predict into the images' folder",
                                  "evaluate into a ground-truth folder", "evaluate into the dataset",
                                  "run above the dataset"])
def test_outputs_never_touch_inputs(saved, tmp_path, capsys, case):
    _, model, X = saved
    run_folder = _recorded_folder(tmp_path / "m", {"model.uflow": model.read_bytes()})
    images = _images(_recorded_folder(tmp_path / "images", {}), X, 2)  # even a folder a run has a record in
    data = _dataset(tmp_path / "data" / "DS", X)
    args = {
        "predict into the model's run folder": ["predict", str(run_folder / "model.uflow"), str(images),
                                                "-o", str(run_folder), "--quiet"],
        "predict into the images' folder": ["predict", str(model), str(images), "-o", str(images), "--quiet"],
        "evaluate into a ground-truth folder": ["evaluate", str(model), str(data), "-o",
                                                str(data / "ground_truth/crack")],
        "evaluate into the dataset": ["evaluate", str(model), str(data), "-o", str(data)],
        "run above the dataset": ["run", str(data), "-o", str(tmp_path / "data"), "--max-epochs", "1", "--quiet"],
    }[case]
    before = _checksums(tmp_path)
    assert main([*args, "--overwrite"]) == 2
    assert "an input of the run" in _one_line(capsys.readouterr())
    assert _checksums(tmp_path) == before


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_fit_never_replaces_a_file_it_did_not_write(saved, tmp_path, capsys, monkeypatch, overwrite):
    detector, model, X = saved
    monkeypatch.setattr(cli, "_fit", lambda *args: detector)  # the training is not what is tested
    good = _images(tmp_path / "good", X, 3)
    (tmp_path / "notes.uflow").write_text("not a model")
    before = _checksums(tmp_path)
    for target, message in ((good / "000.png", "among the run's inputs"), (good / "new.uflow", "among the run's"),
                            (tmp_path / "notes.uflow", "not written by sklearn-uflow")):
        assert main(["fit", str(good), "-o", str(target), "--quiet", *overwrite]) == 2
        assert message in _one_line(capsys.readouterr())
    assert _checksums(tmp_path) == before


def test_fit_replaces_a_model_file_only_with_overwrite(saved, tmp_path, capsys, monkeypatch):
    detector, model, X = saved
    monkeypatch.setattr(cli, "_fit", lambda *args: detector)
    good = _images(tmp_path / "good", X, 3)
    target = tmp_path / "model.uflow"
    target.write_bytes(model.read_bytes())
    os.utime(target, (0, 0))
    assert main(["fit", str(good), "-o", str(target), "--quiet"]) == 2
    assert "--overwrite" in _one_line(capsys.readouterr()) and target.stat().st_mtime == 0
    assert main(["fit", str(good), "-o", str(target), "--quiet", "--overwrite"]) == 0
    assert target.stat().st_mtime > 0 and UFlowDetector.load(target).image_size_ == detector.image_size_


@pytest.mark.parametrize("bad, message", [
    (["--files-per-task", "-1"], "--files-per-task must be at least 1"),
    (["--files-per-task", "0"], "--files-per-task must be at least 1"),
    (["--epsilon", "nan"], "--epsilon must be a number above 0"),
    (["--epsilon", "-1"], "--epsilon must be a number above 0"),
    (["--epsilon", "0"], "--epsilon must be a number above 0"),
    (["--scheduler", "my cluster"], "--scheduler takes a Dask scheduler address"),
])
def test_every_argument_is_checked_before_anything_is_removed(saved, tmp_path, capsys, monkeypatch, bad, message):
    _, model, X = saved
    images, out = _images(tmp_path / "images", X, 2), tmp_path / "out"
    assert main(["predict", str(model), str(images), "-o", str(out), "--quiet"]) == 0
    before = _checksums(tmp_path)
    capsys.readouterr()
    monkeypatch.setattr(UFlowDetector, "load", lambda *a, **k: pytest.fail("loaded before checking arguments"))
    assert main(["predict", str(model), str(images), "-o", str(out), "--quiet", "--overwrite", *bad]) == 2
    assert message in _one_line(capsys.readouterr())
    assert _checksums(tmp_path) == before


@pytest.mark.parametrize("args, message", [
    (["run", "--image-size", "0"], "--image-size takes SIDE, H W (positive integers) or auto"),
    (["run", "--input-size", "64", "-3"], "--input-size takes SIDE, H W (positive integers) or auto"),
    (["run", "--max-epochs", "0"], "'max_epochs' parameter of UFlowDetector"),
    (["run", "--n-synthetic", "3"], "--n-synthetic must be at least 8"),
    (["fit", "good", "-o", "m.uflow", "--learning-rate", "-1"], "'learning_rate' parameter of UFlowDetector"),
])
def test_training_arguments_are_checked_before_any_path(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "uflow-output").mkdir()
    (tmp_path / "uflow-output/notes.txt").write_text("the user's")
    assert main(args) == 2
    assert message in _one_line(capsys.readouterr())


def test_input_paths_are_checked_before_the_output_folder(tmp_path, capsys, monkeypatch):
    # The README's first command leaves uflow-output/ in the working folder; a later mistyped input is named
    # as such, not as a problem with that folder.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "uflow-output").mkdir()
    (tmp_path / "uflow-output/results.csv").write_text("an earlier run's table")
    assert main(["run", str(tmp_path / "nonexistent")]) == 2
    assert "no such folder" in _one_line(capsys.readouterr())


HOLD_FOLDER = """
import sys, time
from sklearn_uflow.outputs import OutputFolder
folder = OutputFolder(sys.argv[1], ["a_map.png"], command="holder").__enter__()
print("holding", flush=True)
time.sleep(120)
"""


def test_one_run_at_a_time_and_a_stale_lock_is_taken_over(saved, tmp_path, capsys):
    _, model, X = saved
    images, out = _images(tmp_path / "images", X, 2), tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_FOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert main(["predict", str(model), str(images), "-o", str(out), "--quiet", "--overwrite"]) == 2
        line = _one_line(capsys.readouterr())
        assert "being written by another run" in line and f"PID {holder.pid}" in line
        with pytest.raises(FolderInUseError, match=f"PID {holder.pid}"):
            OutputFolder(out, ["b_map.png"], overwrite=True).__enter__()
    finally:
        holder.kill()  # as a crash would: no clean-up, the lock file stays with the dead run's PID
        holder.wait()
    assert (out / ".sklearn-uflow-run.lock").read_text().strip() == str(holder.pid)
    assert main(["predict", str(model), str(images), "-o", str(out), "--quiet", "--overwrite"]) == 0
    assert f"the run with PID {holder.pid} ended without releasing its lock" in _one_line(capsys.readouterr())
    assert not (out / ".sklearn-uflow-run.lock").exists() and read_record(out)["finished"]
    (out / ".sklearn-uflow-run.lock").write_text(f"{holder.pid}\n")  # in the library, a warning
    with pytest.warns(StaleLockWarning, match=f"PID {holder.pid}"), OutputFolder(out, [], overwrite=True):
        pass


def test_score_files_follows_the_same_rules(saved, tmp_path):
    from sklearn_uflow.batch import score_files

    detector, _, X = saved
    files = sorted(_images(tmp_path / "images", X, 2).iterdir())
    score_files(detector, files, tmp_path / "out")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        score_files(detector, files[:1], tmp_path / "out")
    rows = score_files(detector, files[:1], tmp_path / "out", overwrite=True)
    assert len(rows) == 1 and not (tmp_path / "out/001_map.png").exists()
    with pytest.raises(ValueError, match="an input of the run"):
        score_files(detector, files, tmp_path / "images", overwrite=True)
    for bad in ({"files_per_task": 0}, {"epsilon": 0.0}, {"epsilon": float("nan")}):
        with pytest.raises(ValueError):
            score_files(detector, files, tmp_path / "new", **bad)
    with pytest.raises(ValueError, match="inside its with block"):  # a folder not held: no lock, no record
        score_files(detector, files, OutputFolder(tmp_path / "new", ["000_map.png"]))
    assert not (tmp_path / "new").exists()


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
            "run": ["run"], "evaluate": ["evaluate", str(model), str(_dataset(tmp_path / "DS", X))]}[command]
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


def test_an_unreadable_record_is_not_trusted(tmp_path):
    (tmp_path / RECORD).write_text(json.dumps({"format": "sklearn-uflow-run", "files": {"../../etc/passwd": 1}}))
    with pytest.raises(OutputExistsError, match="not a run record"):
        OutputFolder(tmp_path, ["a"], overwrite=True).check()


# A predict whose PNG writer is slowed down, so that a signal lands in the middle of the run.
SLOW_PREDICT = """
import sys, time
from sklearn_uflow import batch
save = batch._save_png
batch._save_png = lambda array, path: (time.sleep(0.02), save(array, path))
from sklearn_uflow.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _restore_sigint():
    # a background job of a shell ignores SIGINT, and a child inherits that: restore the default
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_predict_with_one_line_and_whole_files(saved, tmp_path, signum, status):
    _, model, X = saved
    images, out = _images(tmp_path / "images", X, 120), tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_PREDICT, "predict", str(model), str(images), "-o", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_restore_sigint,
    )
    deadline = time.monotonic() + 120
    while len(list(out.glob("*_overlay.png"))) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr
    assert len(stderr.strip().splitlines()) == 1 and "did not finish" in stderr
    written = sorted(p for p in out.iterdir() if p.name != RECORD)
    assert 30 <= len(written) < 3 * 120  # stopped midway
    assert not (out / "results.csv").exists() and not (out / "report.html").exists()
    for path in written:  # every file there is a whole PNG, and no temporary one is left
        assert path.suffix == ".png"
        with Image.open(path) as image:
            image.load()
    assert read_record(out)["finished"] is None  # the record says the run did not finish


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_command_starts_gets_one_line(tmp_path, signum, status):
    process = subprocess.Popen([sys.executable, "-m", "sklearn_uflow.cli", "run", "-o", str(tmp_path / "out")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               preexec_fn=_restore_sigint)
    time.sleep(0.8)  # within the imports of torch and the rest (several seconds)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    # Where the interrupt lands in an import that torch's C code runs, CPython ends the process by SIGINT itself
    # after main returned 130: what a shell reports as 130 too (128 + 2).
    assert process.returncode in ((status, -signum) if signum == signal.SIGINT else (status,)), stderr
    assert len(stderr.strip().splitlines()) == 1 and "did not finish" in stderr


def test_the_command_line_imports_nothing_heavy_before_its_handlers():
    code = textwrap.dedent("""
        import sys
        import sklearn_uflow.cli
        print(sorted(m for m in ("torch", "numpy", "sklearn", "PIL") if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr
