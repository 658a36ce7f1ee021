import shutil
from html.parser import HTMLParser

import numpy as np
import pytest

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


def test_report_sorts_by_score_and_escapes_every_file_name(tmp_path):
    path = write_report(_rows(), tmp_path, 1.0, parameters=[("epsilon", 1.0)], metrics=[("pixel ROC AUC", "0.9")])
    page = _Page()
    page.feed(path.read_text())
    assert page.scripts == 1  # ours; the hostile name is text
    assert [row["data-name"] for row in page.rows] == [HOSTILE, "a", "b", "broken"]
    assert page.rows[0]["cells"][1] == HOSTILE and page.rows[0]["data-decision"] == "anomalous"
    assert page.rows[0]["images"][0] == "%3Cscript%3Ealert%28%22x%22%29%3C/script%3E%20%26%20co_overlay.png"
    assert page.rows[3]["cells"][2] == "could not read image" and "images" not in page.rows[3]
    assert "pixel ROC AUC" in path.read_text() and "http" not in path.read_text()  # nothing fetched


def test_run_passes_each_test_image_once_through_the_backbone_and_writes_the_report(tmp_path, monkeypatch):
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
    status = main(["run", "-o", str(out), "--image-size", "64", "--input-size", "64", "--max-epochs", "1",
                   "--n-synthetic", "24", "--quiet"])
    assert status == 0
    assert counts["images"] - counts["after_fit"] == 24  # maps, masks, overlays and metrics from one pass
    page = _Page()
    page.feed((out / "report.html").read_text())
    scores = [float(row["data-score"]) for row in page.rows]
    assert len(scores) == 24 and scores == sorted(scores, reverse=True)
    assert not (tmp_path / "quiet").exists()
    assert main(["run", "-o", str(tmp_path / "quiet"), "--image-size", "64", "--input-size", "64",
                 "--max-epochs", "1", "--n-synthetic", "24", "--quiet", "--no-report"]) == 0
    assert not (tmp_path / "quiet/report.html").exists()


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_report_in_a_real_browser(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="needs Playwright: pip install playwright")
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("needs a Chromium: apt install chromium (see the README)")
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
        scores = [float(s) for s in page.locator("#results tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.score)")]
        assert scores == sorted(scores, reverse=True)
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
