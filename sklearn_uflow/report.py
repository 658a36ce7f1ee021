"""A results page a person can browse: ``report.html`` beside the files a run writes.

One self-contained HTML file (inline style and script, no server, no
network; it opens from a ``file://`` URL) that lists the scored images most
anomalous first, by the decision's own evidence (the smallest log10 NFA, then
the anomaly map's maximum), each with its overlay and mask thumbnails (the
PNG files beside it, opened full size on click), its decision at epsilon, its
smallest log10 NFA and its number of regions; a filter for anomalous images,
a search by file name, the run's parameters and, with ground truth, the
metrics. File names come from users' folders: every one is escaped, in the
text and in the image links.
"""

import html
import math
from pathlib import Path
from urllib.parse import quote

from .outputs import atomic_path

__all__ = ["write_report"]

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
td, th { padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: middle; }
tr.anomalous td.decision { color: #b00; font-weight: 600; }
img { height: 96px; image-rendering: pixelated; }
#controls { margin: 1em 0; display: flex; gap: 1.5em; align-items: center; }
.error { color: #b00; }
"""

# Filters by hiding rows; never writes user data into the page as markup.
_SCRIPT = """
const rows = Array.from(document.querySelectorAll('#results tbody tr'));
const only = document.getElementById('anomalous-only');
const search = document.getElementById('search');
function update() {
  const needle = search.value.toLowerCase();
  let shown = 0;
  for (const row of rows) {
    const visible = (!only.checked || row.dataset.decision === 'anomalous')
      && row.dataset.name.toLowerCase().includes(needle);
    row.hidden = !visible;
    shown += visible;
  }
  document.getElementById('count').textContent = shown + ' of ' + rows.length + ' images';
}
only.addEventListener('change', update);
search.addEventListener('input', update);
update();
"""


#: log10 NFA below this are shown as "< -300": the NFA is then far below any
#: threshold anyone sets, and its digits say nothing more.
NFA_FLOOR = -300.0


def _number(row, key, missing):
    value = row.get(key)
    return value if isinstance(value, float) and math.isfinite(value) else missing


def _data(value):
    """A number for a data attribute, as JavaScript's Number() reads it."""
    return value if math.isfinite(value) else "Infinity" if value > 0 else "-Infinity"


def _rank(row):
    """Most anomalous first: the smallest log10 NFA, then the largest map value; unscored files last."""
    return (bool(row.get("error")), _number(row, "min_log10_nfa", math.inf),
            -_number(row, "max_anomaly_score", -math.inf))


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _nfa_cell(value):
    if isinstance(value, float):
        return html.escape(f"< {NFA_FLOOR:.0f}") if value < NFA_FLOOR else f"{value:.1f}"
    return html.escape(str(value))


def _table(pairs, table_id):
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs)
    return f'<table id="{table_id}">{body}</table>'


def write_report(rows, output_dir, epsilon, parameters=(), metrics=(), title="sklearn-uflow results"):
    """Write ``report.html`` into ``output_dir``.

    One self-contained page: the run's parameters, its metrics when there is
    ground truth, and a table of every image with its thumbnails, sortable
    and filterable without a server.

    Parameters
    ----------
    rows : list of dict
        The summary rows of :func:`sklearn_uflow.batch.score_files` or
        :func:`sklearn_uflow.batch.write_outputs`; an image's thumbnails are
        ``<image>_overlay.png`` and ``<image>_mask.png`` in ``output_dir``.
    output_dir : path-like
        The folder of the run's files.
    epsilon : float
        The NFA threshold of the decisions.
    parameters, metrics : iterable of (str, object), default=()
        The run's parameters, and the metrics table when there is ground
        truth.
    title : str, default="sklearn-uflow results"
        The page's title.

    Returns
    -------
    path : pathlib.Path
        The page written.

    See Also
    --------
    sklearn_uflow.batch.score_files : Writes the rows and thumbnails it shows.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn_uflow.report import write_report
    >>> row = dict(image="a.png", max_anomaly_score=0.2, decision="normal", min_log10_nfa=2.0, n_regions=0, error="")
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     print(write_report([row], folder, epsilon=0.05).name)
    report.html
    """
    ordered = sorted(rows, key=_rank)  # stable: unscored files keep their order
    lines = []
    for rank, row in enumerate(ordered, 1):
        name = str(row["image"])
        decision = row.get("decision") or ""
        thumbnails = "".join(  # each opens full size on click
            f'<a href="{html.escape(quote(name + suffix))}" target="_blank">'
            f'<img src="{html.escape(quote(name + suffix))}" alt="{html.escape(kind)}" loading="lazy"></a>'
            for kind, suffix in (("overlay", "_overlay.png"), ("mask", "_mask.png"))
        ) if not row.get("error") else f'<span class="error">{html.escape(str(row["error"]))}</span>'
        lines.append(
            f'<tr class="{html.escape(decision)}" data-name="{html.escape(name)}" '
            f'data-decision="{html.escape(decision)}" data-nfa="{_data(_number(row, "min_log10_nfa", math.inf))}" '
            f'data-score="{_data(_number(row, "max_anomaly_score", -math.inf))}">'
            f"<td>{rank}</td><td class=\"name\">{html.escape(name)}</td><td>{thumbnails}</td>"
            f'<td class="nfa">{_nfa_cell(row.get("min_log10_nfa", ""))}</td>'
            f'<td class="decision">{html.escape(decision)}</td>'
            f'<td class="score">{_cell(row.get("max_anomaly_score", ""))}</td>'
            f'<td>{_cell(row.get("n_regions", ""))}</td></tr>'
        )
    n_anomalous = sum(row.get("decision") == "anomalous" for row in rows)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(rows)} images, {n_anomalous} anomalous at epsilon = {epsilon:g} (a region with NFA &le; epsilon;
a normal image holds one with probability at most epsilon, measured on held-out normal images). Most
anomalous first: by the smallest log10 NFA, then by the anomaly map's maximum. Click a picture to open it full size.</p>
{"<h2>Metrics</h2>" + _table(metrics, "metrics") if metrics else ""}
<div id="controls"><label><input type="checkbox" id="anomalous-only"> anomalous only</label>
<label>file name <input type="search" id="search"></label><span id="count"></span></div>
<table id="results"><thead><tr><th>#</th><th>image</th><th>overlay, mask</th><th>min log10 NFA</th>
<th>decision</th><th>max anomaly score</th><th>regions</th></tr></thead>
<tbody>
{chr(10).join(lines)}
</tbody></table>
{"<h2>Parameters</h2>" + _table(parameters, "parameters") if parameters else ""}
<script>{_SCRIPT}</script>
</body></html>
"""
    path = Path(output_dir) / "report.html"
    with atomic_path(path) as temporary:
        Path(temporary).write_text(page, encoding="utf-8")
    return path
