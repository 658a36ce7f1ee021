"""How fast ``report.html`` opens and filters in headless Chromium.

Writes a report of 1,000 images (64x64 PNG thumbnails beside it, random
scores), then, in headless Chromium (Playwright driving the system
Chromium), times loading the page until its images are in, and the filters:
"anomalous only" and a search by file name. Writes its table into
``docs/benchmarks/speed.rst``.

Usage: ``python benchmarks/bench_report.py`` (``pip install playwright``,
``apt install chromium``). ``--screenshot RUN_FOLDER`` instead takes the
picture of a run's report that the user guide shows
(``docs/_static/report.png``), e.g. of ``sklearn-uflow run -o RUN_FOLDER``.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _report import write_table
from sklearn_uflow.report import write_report

N_IMAGES = 1000


def main():
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(0)
    scores = rng.random(N_IMAGES)
    rows = [{"image": f"part_{i:04d}", "max_anomaly_score": float(s), "decision": "anomalous" if s > 0.9 else "normal",
             "min_log10_nfa": float(-10 * (s - 0.9)), "n_regions": int(s > 0.9), "error": ""}
            for i, s in enumerate(scores)]
    results = []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
        for row in rows:
            for kind in ("overlay", "mask"):
                Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
                    Path(folder) / f"{row['image']}_{kind}.png")
        start = time.perf_counter()
        path = write_report(rows, folder, 1.0)
        results.append(("write report.html (Python)", time.perf_counter() - start))
        browser = p.chromium.launch(executable_path=shutil.which("chromium"))
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(path.as_uri(), wait_until="load")
        results.append(("open the page, sorted by score, thumbnails loaded", time.perf_counter() - start))
        start = time.perf_counter()
        page.check("#anomalous-only")
        shown = page.locator("#results tbody tr:not([hidden])").count()
        results.append((f"filter: anomalous only ({shown} rows shown)", time.perf_counter() - start))
        start = time.perf_counter()
        page.uncheck("#anomalous-only")
        page.fill("#search", "part_00")
        shown = page.locator("#results tbody tr:not([hidden])").count()
        results.append((f"search by name ({shown} rows shown)", time.perf_counter() - start))
        browser.close()
    write_table("bench_report", f"The report of {N_IMAGES:,} images in headless Chromium",
                ["step", "seconds"], [[step, f"{seconds:.3f}"] for step, seconds in results],
                notes="Each step once, in a fresh headless Chromium driven by Playwright; the page's rows are "
                      "sorted when it is written, so opening it shows them sorted.")


def screenshot(run_folder, width=1100, height=900):
    """The top of a run's ``report.html`` in headless Chromium, into ``docs/_static/report.png``."""
    from playwright.sync_api import sync_playwright

    target = Path(__file__).resolve().parents[1] / "docs" / "_static" / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"))
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto((Path(run_folder) / "report.html").resolve().as_uri(), wait_until="load")
        page.screenshot(path=target)
        browser.close()
    print(f"wrote {target}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", metavar="RUN_FOLDER", help="picture a run's report instead")
    args = parser.parse_args()
    if args.screenshot:
        screenshot(args.screenshot)
    else:
        main()
