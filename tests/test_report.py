import os
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
from sklearn_uflow.cli import main
from sklearn_uflow.report import write_report

HOSTILE = '<script>alert("x")</script> & co'


class _Page(HTMLParser):
    """The rows of the results table as a browser would read them."""

    def __init__(self):
        super().__init__()
        self.rows, self.scripts, self._cell = [], 0, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "tr" and "data-name" in attrs:
            self.rows.append({**attrs, "cells": []})
        if tag == "td" and self.rows:
            self._cell = ""
        if tag == "img" and self.rows:
            self.rows[-1].setdefault("images", []).append(attrs["src"])
        if tag == "a" and self.rows:
            self.rows[-1].setdefault("links", []).append(attrs["href"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append(self._cell)
            self._cell = None


def _rows():
    return [{"image": "b", "max_anomaly_score": 0.2, "decision": "normal", "min_log10_nfa": 1.5, "n_regions": 0,
             "error": ""},
            {"image": HOSTILE, "max_anomaly_score": 0.9, "decision": "anomalous", "min_log10_nfa": -3.0,
             "n_regions": 2, "error": ""},
            {"image": "broken", "max_anomaly_score": "", "decision": "", "min_log10_nfa": "", "n_regions": "",
             "error": "could not read image"},
            {"image": "a", "max_anomaly_score": 0.5, "decision": "anomalous", "min_log10_nfa": -0.5, "n_regions": 1,
             "error": ""}]


def _ties():
    """Two normal images at the same NFA (the ceiling), told apart by the map; one beyond any threshold."""
    return [{"image": "low", "max_anomaly_score": 0.3, "decision": "normal", "min_log10_nfa": 7.4, "n_regions": 0,
             "error": ""},
            {"image": "certain", "max_anomaly_score": 1.0, "decision": "anomalous",
             "min_log10_nfa": -12394756248.057, "n_regions": 1, "error": ""},
            {"image": "high", "max_anomaly_score": 0.6, "decision": "normal", "min_log10_nfa": 7.4, "n_regions": 0,
             "error": ""}]


def test_report_ranks_by_the_evidence_and_escapes_every_file_name(tmp_path):
    path = write_report(_rows() + _ties(), tmp_path, 1.0, parameters=[("epsilon", 1.0)],
                        metrics=[("pixel ROC AUC", "0.9")])
    page = _Page()
    page.feed(path.read_text())
    assert page.scripts == 1  # ours; the hostile name is text
    # the smallest log10 NFA first, ties broken by the map's maximum, unscored files last
    assert [row["data-name"] for row in page.rows] == ["certain", HOSTILE, "a", "b", "high", "low", "broken"]
    assert page.rows[1]["cells"][1] == HOSTILE and page.rows[1]["data-decision"] == "anomalous"
    hostile = "%3Cscript%3Ealert%28%22x%22%29%3C/script%3E%20%26%20co"
    assert page.rows[1]["images"] == [f"{hostile}_overlay.png", f"{hostile}_mask.png"]
    assert page.rows[1]["links"] == page.rows[1]["images"]  # a click opens the picture full size
    assert page.rows[0]["cells"][3] == "< -300" and page.rows[1]["cells"][3] == "-3.0"
    assert page.rows[6]["cells"][2] == "could not read image" and "images" not in page.rows[6]
    assert "pixel ROC AUC" in path.read_text() and "http" not in path.read_text()  # nothing fetched


def test_run_end_to_end(tmp_path, monkeypatch, capsys):
    """The demo as a user runs it: fitted on the first 6 good images, tested on the 18 others, each passed
    once through the backbone for every file written; one progress bar per stage; a report ranked by the
    evidence, the true defects' contours on the overlays."""
    import csv

    from sklearn_uflow.datasets import make_defects

    counts = {"images": 0, "after_fit": None}
    extract, fit = CNNFeatureTransformer.extract, UFlowDetector.fit

    def counting_extract(self, X):
        counts["images"] += len(X)
        return extract(self, X)

    def noting_fit(self, *args, **kwargs):
        fitted = fit(self, *args, **kwargs)
        counts["after_fit"] = counts["images"]
        return fitted

    monkeypatch.setattr(CNNFeatureTransformer, "extract", counting_extract)
    monkeypatch.setattr(UFlowDetector, "fit", noting_fit)
    out = tmp_path / "out"
    assert main(["run", "-o", str(out), "--image-size", "64", "--input-size", "64", "--max-epochs", "1",
                 "--n-synthetic", "24"]) == 0
    captured = capsys.readouterr()
    assert "pixel ROC AUC" in captured.out
    assert counts["images"] - counts["after_fit"] == 18  # maps, masks, overlays and metrics from one pass
    # progress: one bar per stage that runs, none of them the feature step's own
    updates = [line.strip() for line in re.split(r"[\r\n]", captured.err) if line.strip()]
    assert {line.split(":")[0] for line in updates} == {"features", "training", "scoring"}, captured.err
    started = [line.split(":")[0] for line in updates if re.match(r"\w+: +0%", line)]  # a bar shows 0% once
    assert started.count("features") == 1 and started.count("scoring") == 1, captured.err
    # the images fitted on are not tested; the others are, each with its map, mask and overlay
    _, y, _ = make_defects(n_samples=24, image_size=64, random_state=0)
    tested = set(np.setdiff1d(np.arange(24), np.flatnonzero(y == 0)[:6]))
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {int(row["image"].removeprefix("synthetic_")) for row in rows} == tested and len(rows) == 18
    for row in rows:  # the true contour (green) on the overlays of defective images, never on good ones
        overlay = np.asarray(Image.open(out / f"{row['image']}_overlay.png"))
        assert (overlay == (0, 200, 0)).all(axis=-1).any() == bool(y[int(row["image"][-3:])]), row["image"]
        assert (out / f"{row['image']}_map.png").is_file() and (out / f"{row['image']}_mask.png").is_file()
    page = _Page()
    page.feed((out / "report.html").read_text())
    keys = [(float(row["data-nfa"]), -float(row["data-score"])) for row in page.rows]
    assert len(keys) == 18 and keys == sorted(keys)
    # quiet and without a report: nothing on stderr, no page
    assert main(["predict", str(out / "model.uflow"), str(out / "synthetic_001_map.png"), "-o",
                 str(tmp_path / "quiet"), "--quiet", "--no-report"]) == 0
    assert capsys.readouterr().err == "" and not (tmp_path / "quiet/report.html").exists()


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _missing(reason):
    """Skip where the browser is missing, as the README says; fail where CI says it is installed."""
    if os.environ.get("SKLEARN_UFLOW_BROWSER_TESTS") == "required":
        pytest.fail(f"SKLEARN_UFLOW_BROWSER_TESTS=required, but this test {reason}")
    pytest.skip(reason)


def test_report_in_a_real_browser(tmp_path):
    try:
        from playwright import sync_api as playwright
    except ImportError:
        _missing("needs Playwright: pip install playwright")
    browser_path = _chromium()
    if browser_path is None:
        _missing("needs a Chromium: apt install chromium (see the README)")
    rng = np.random.default_rng(0)
    rows = _rows() + [{"image": f"img_{i:03d}", "max_anomaly_score": float(s), "n_regions": 0, "error": "",
                       "decision": "anomalous" if s > 0.8 else "normal", "min_log10_nfa": 1.0}
                      for i, s in enumerate(rng.random(50))]
    path = write_report(rows, tmp_path, 1.0)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path)
        page = browser.new_page()
        errors = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path.as_uri())
        names = page.locator("#results tbody tr td.name").all_text_contents()
        keys = page.locator("#results tbody tr").evaluate_all(
            "rows => rows.map(r => [Number(r.dataset.nfa), -Number(r.dataset.score)])")
        assert keys == sorted(keys)
        assert HOSTILE in names  # shown as text, not run
        assert page.evaluate("typeof window.alert === 'function' && document.querySelectorAll('script').length") == 1
        page.check("#anomalous-only")
        decisions = page.locator("#results tbody tr:not([hidden]) td.decision").all_text_contents()
        assert decisions and set(decisions) == {"anomalous"}
        page.uncheck("#anomalous-only")
        page.fill("#search", "img_00")
        assert page.locator("#results tbody tr:not([hidden])").count() == 10
        browser.close()
    # missing thumbnails (no PNGs were written here) are the only failed loads
    assert all("Failed to load resource" in e for e in errors), errors
