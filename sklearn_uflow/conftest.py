"""pytest's collection of the doctests: a module that needs an extra which is
not installed is left out, as its tests in ``tests/`` are skipped."""

import importlib.util

_DASK_EXTRA = ("dask", "distributed", "dask_ml")

collect_ignore = [] if all(importlib.util.find_spec(name) for name in _DASK_EXTRA) else ["parallel.py"]
