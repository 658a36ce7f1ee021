"""Sphinx configuration of the sklearn-uflow documentation."""

import os
import socket
import sys
from datetime import date

import sklearn_uflow

project = "sklearn-uflow"
copyright = f"{date.today().year}, sklearn-uflow developers"
version = release = sklearn_uflow.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
# scikit-learn generates set_*_request methods (metadata routing) on estimators
# whose methods take extra arguments; their docstrings point into scikit-learn's
# own glossary, which cannot be resolved here.
autodoc_default_options = {
    "inherited-members": False,
    "exclude-members": ",".join(f"set_{m}_request" for m in ("fit", "partial_fit", "score", "predict", "transform")),
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "benchmarks/*"]
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_title = "sklearn-uflow"
html_theme_options = {"navigation_with_keys": False}


def _online(host="docs.scipy.org", port=443, timeout=2.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


# Cross-links to the libraries' own documentation need their inventories;
# on a machine without internet (as in CI) the build goes on without them
# rather than failing on the download.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
}
if os.environ.get("SKLEARN_UFLOW_DOCS_OFFLINE") or not _online():
    intersphinx_mapping = {}

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(^|[\\/])(__init__|_data)\.py$",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("sklearn_uflow",),
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "reference_url": {"sklearn_uflow": None},
}

sys.path.insert(0, os.path.abspath("."))
