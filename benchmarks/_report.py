"""Write benchmark tables into the documentation (docs/benchmarks/*.rst)."""

import datetime
import os
import platform
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
DATA_ENV = "SKLEARN_UFLOW_DATA"


def data_dir():
    """The real datasets: ``$SKLEARN_UFLOW_DATA``, else ``../shared/data`` beside the repository."""
    path = os.environ.get(DATA_ENV) or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    return Path(path)


def machine():
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")


# The page of docs/benchmarks/ that each table is written into; a table not listed gets a page of its own.
PAGES = {
    "bench_detector": "accuracy", "bench_detector_types": "accuracy", "bench_segmentation_quality": "accuracy",
    "bench_seeds": "accuracy",
    "full_fits": "development", "few_shot": "development", "any_pose": "development", "aspect": "development",
    "letterbox": "development", "held_out_few": "development", "held_out_full": "development",
    "any_pose_symmetry": "development", "calibrated_full": "development", "calibrated_few": "development",
    "calibrated_any_pose": "development",
    "bench_features": "speed", "bench_flow_step": "speed", "bench_segmentation": "speed", "bench_memory": "speed",
    "bench_report": "speed", "bench_runtime": "speed",
    "bench_gpu": "scaling", "bench_distributed": "scaling", "bench_determinism": "scaling",
}


def write_table(name, title, header, rows, notes=""):
    """Write a list-table, with the date and machine it ran on, into its page of
    ``docs/benchmarks/`` (``PAGES``), replacing the table of that name there."""
    DOCS.mkdir(parents=True, exist_ok=True)
    # The script that ran, which need not share the table's name (one script can write several tables).
    script = Path(sys.argv[0]).name if sys.argv[0].endswith(".py") else f"{name}.py"
    lines = [f".. begin {name}", "", title, "~" * len(title), "",  # a subsection of docs/benchmarks.rst
             f"Measured on {datetime.date.today().isoformat()}, {machine()}, by "
             f"``python benchmarks/{script}``.", ""]
    if notes:
        lines += [notes, ""]
    lines += [".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + rows:
        lines.append("   * - " + str(row[0]))
        lines += [f"     - {cell}" for cell in row[1:]]
    lines += ["", f".. end {name}"]
    page = DOCS / f"{PAGES.get(name, name)}.rst"
    text = page.read_text() if page.exists() else ""
    begin, end = f".. begin {name}\n", f".. end {name}\n"
    block = "\n".join(lines) + "\n"
    if begin in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text += ("\n" if text else "") + block
    page.write_text(text)
    print("\n".join(lines))
