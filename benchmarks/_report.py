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


def write_table(name, title, header, rows, notes=""):
    """Write an rst page with a list-table and the date and machine it ran on."""
    DOCS.mkdir(parents=True, exist_ok=True)
    # The script that ran, which need not share the page's name (one script can write several pages).
    script = Path(sys.argv[0]).name if sys.argv[0].endswith(".py") else f"{name}.py"
    lines = [title, "=" * len(title), "",
             f"Measured on {datetime.date.today().isoformat()}, {machine()}, by "
             f"``python benchmarks/{script}``.", ""]
    if notes:
        lines += [notes, ""]
    lines += [".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + rows:
        lines.append("   * - " + str(row[0]))
        lines += [f"     - {cell}" for cell in row[1:]]
    (DOCS / f"{name}.rst").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
