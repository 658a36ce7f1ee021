"""Docstring sections that several public methods share, written once.

A docstring line that holds only ``{name}`` is replaced by the fragment of
that name, indented as the line was (as matplotlib's and SciPy's docstring
interpolation do); the result is an ordinary docstring for ``help``, Sphinx
and numpydoc's validator.
"""

import textwrap

__all__ = ["IMAGES", "LOADING", "ROWS", "fill_docstring"]

#: The images a fitted estimator is given.
IMAGES = """
Parameters
----------
X : array-like of shape (n_images, H, W, C) or (n_images, H, W)
    Images of the size seen in ``fit`` (``uint8`` or float in [0, 1]), or
    rows of features with ``extractor="precomputed"``.
"""

#: Rows of latents, as the segmenter takes them.
ROWS = """
Parameters
----------
X : array-like of shape (n_samples, n_features)
    Latent rows, the scales flattened one after the other.
"""

#: Reading a model file.
LOADING = """
Parameters
----------
path : str or path-like
    The model file.

Returns
-------
detector : UFlowDetector
    The fitted detector, on its ``device`` (the CPU where CUDA is absent).

Raises
------
sklearn_uflow.model_file.ModelFileError
    If the file is missing, truncated, corrupted, of another format or
    version, or names anything but this library's estimators (a
    ``ValueError``).
"""


def fill_docstring(**fragments):
    """Return a decorator that fills the ``{name}`` lines of a docstring with ``fragments``.

    Parameters
    ----------
    **fragments : str
        Docstring sections, written without indentation.

    Returns
    -------
    decorate : callable
        Fills the docstring of the function or class it decorates, in place.
    """
    def decorate(obj):
        lines = []
        for line in obj.__doc__.splitlines():
            name = line.strip()[1:-1] if line.strip().startswith("{") and line.strip().endswith("}") else None
            if name in fragments:
                indent = line[: len(line) - len(line.lstrip())]
                lines += textwrap.indent(textwrap.dedent(fragments[name]).strip("\n"), indent).splitlines()
            else:
                lines.append(line)
        obj.__doc__ = "\n".join(lines)
        return obj

    return decorate
