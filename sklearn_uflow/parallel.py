"""Score dask arrays of images block by block: dask-ml's ParallelPostFit for images.

``dask_ml.wrappers.ParallelPostFit`` fits in memory and predicts block-wise,
which is what a detector fitted on a few hundred good images and applied to
millions needs. It assumes 2-D tables, though: its ``predict`` drops axis 1
and guesses output types by predicting on a ``(1, n_features)`` row, so it
cannot carry ``(n, H, W, C)`` images, and it has no ``score_samples`` or
map-valued methods. :class:`ImageParallelPostFit` is that wrapper for images.
It needs the ``dask`` extra: ``pip install 'sklearn-uflow[dask]'``.
"""

import numpy as np
from sklearn.utils._param_validation import HasMethods

from ._docstrings import fill_docstring

try:
    import dask
    import dask.array as da
    from dask_ml.wrappers import ParallelPostFit
except ImportError:  # pragma: no cover - the error names the fix
    raise ImportError("sklearn_uflow.parallel needs the dask extra: pip install 'sklearn-uflow[dask]'") from None

__all__ = ["ImageParallelPostFit"]


def _detector(estimator):
    return estimator[-1] if hasattr(estimator, "steps") else estimator


def _call(block, estimator, method):
    return getattr(estimator, method)(block)


# The images the wrapper's methods take.
_DASK_IMAGES = """
Parameters
----------
X : dask.array.Array or array-like of shape (n_images, H, W[, C])
    Images; a dask array is scored block by block along its first axis,
    anything else in memory.
"""


class ImageParallelPostFit(ParallelPostFit):
    """Fit in memory, score dask arrays of images block by block.

    A :class:`dask_ml.wrappers.ParallelPostFit` whose scoring methods accept
    a dask array of images ``(n_images, H, W, C)`` or ``(n_images, H, W)``
    (or of feature rows, for ``extractor="precomputed"``) chunked along the
    first axis, and return dask arrays. Each block is scored by the fitted
    estimator exactly as in-process scoring would score it, so the computed
    values are those of the in-process methods, bit for bit on the CPU: blocks
    are re-cut, where needed, at multiples of the detector's scoring batch (16
    images by default), the batches of in-process scoring. The fitted estimator enters
    the task graph once, as a single key, so a distributed scheduler sends it
    once to each worker rather than once per block. NumPy inputs are scored
    directly.

    Parameters
    ----------
    estimator : UFlowDetector
        The detector (or a Pipeline ending in one) to fit and to score with.
    scoring : str or callable, default=None
        As in :class:`dask_ml.wrappers.ParallelPostFit`.

    See Also
    --------
    dask_ml.wrappers.ParallelPostFit : The wrapper it extends.
    sklearn_uflow.batch.score_files : Image files scored on a Dask cluster.

    Examples
    --------
    >>> import dask.array as da
    >>> from sklearn_uflow import UFlowDetector
    >>> from sklearn_uflow.datasets import make_defects
    >>> from sklearn_uflow.parallel import ImageParallelPostFit
    >>> X, y, _ = make_defects(n_samples=40, image_size=32, random_state=0)
    >>> model = ImageParallelPostFit(UFlowDetector("efficientnet_lite0", max_epochs=1, random_state=0))
    >>> model = model.fit(X[y == 0])
    >>> maps = model.anomaly_maps(da.from_array(X, chunks=(8, -1, -1, -1)))
    >>> maps.chunks[0]  # re-cut at multiples of the detector's scoring batch
    (16, 16, 8)
    >>> maps.compute().shape
    (40, 32, 32)
    """

    _parameter_constraints = {"estimator": [HasMethods(["fit", "score_samples"])], "scoring": [str, callable, None]}

    def __init__(self, estimator=None, scoring=None):
        super().__init__(estimator=estimator, scoring=scoring)

    def fit(self, X, y=None, **kwargs):
        """Fit the estimator in memory (see :class:`dask_ml.wrappers.ParallelPostFit`).

        Parameters
        ----------
        X : array-like of shape (n_images, H, W[, C])
            Training images, in memory.
        y : array-like, default=None
            Passed to the estimator's ``fit``.
        **kwargs
            Passed to the estimator's ``fit``.

        Returns
        -------
        self : object
            The fitted wrapper.
        """
        self._validate_params()
        return super().fit(X, y, **kwargs)

    def _check_array(self, X):
        if not isinstance(X, da.Array):
            return X
        # Images are scored whole: one chunk along every axis but the first.
        chunks = {axis: -1 for axis in range(1, X.ndim)}
        # Blocks cut at multiples of the detector's scoring batch put every
        # image in the batch it has in-process, hence the same bits.
        batch = _detector(self._postfit_estimator).scoring_batch_size
        sizes = X.chunks[0]
        if any(size % batch for size in sizes[:-1]):
            block = batch * max(1, round(max(sizes) / batch))
            chunks[0] = (block,) * (X.shape[0] // block) + ((X.shape[0] % block,) if X.shape[0] % block else ())
        if any(n > 1 for n in X.numblocks[1:]) or 0 in chunks:
            X = X.rechunk(chunks)
        return X

    def _blockwise(self, method, X, dtype, per_pixel):
        self._check_method(method)
        X = self._check_array(X)
        estimator = self._postfit_estimator
        if not isinstance(X, da.Array):
            return getattr(estimator, method)(X)
        out_index, new_axes = "i", {}
        if per_pixel:
            out_index, new_axes = "iyx", dict(zip("yx", _detector(estimator).image_size_))
        in_index = "i" + "abc"[: X.ndim - 1]
        return da.blockwise(
            _call, out_index, X, in_index,
            dask.delayed(estimator, pure=False), None, method, None,
            new_axes=new_axes, concatenate=True, dtype=dtype, token=method,
            meta=np.empty((0,) * len(out_index), dtype=dtype),
        )

    @fill_docstring(images=_DASK_IMAGES)
    def predict(self, X):
        """Predict +1 for normal images and -1 for anomalous ones, block-wise.

        {images}

        Returns
        -------
        labels : dask.array.Array or ndarray of shape (n_images,)
            The estimator's ``predict``.
        """
        return self._blockwise("predict", X, np.int64, per_pixel=False)

    @fill_docstring(images=_DASK_IMAGES)
    def score_samples(self, X):
        """Score the images with the estimator's ``score_samples``, block-wise.

        {images}

        Returns
        -------
        scores : dask.array.Array or ndarray of shape (n_images,)
            The smallest log10 NFA of each image.
        """
        return self._blockwise("score_samples", X, np.float64, per_pixel=False)

    @fill_docstring(images=_DASK_IMAGES)
    def decision_function(self, X):
        """Compute the estimator's ``decision_function``, block-wise.

        {images}

        Returns
        -------
        decision : dask.array.Array or ndarray of shape (n_images,)
            Non-positive for outliers.
        """
        return self._blockwise("decision_function", X, np.float64, per_pixel=False)

    @fill_docstring(images=_DASK_IMAGES)
    def anomaly_maps(self, X):
        """Compute the estimator's ``anomaly_maps``, block-wise.

        {images}

        Returns
        -------
        maps : dask.array.Array or ndarray of shape (n_images, H, W)
            In [0, 1]; higher is more anomalous.
        """
        return self._blockwise("anomaly_maps", X, np.float32, per_pixel=True)

    @fill_docstring(images=_DASK_IMAGES)
    def log_nfa_maps(self, X):
        """Compute the estimator's ``log_nfa_maps``, block-wise.

        {images}

        Returns
        -------
        log_nfa : dask.array.Array or ndarray of shape (n_images, H, W)
            The log10 NFA of the region at each pixel.
        """
        return self._blockwise("log_nfa_maps", X, np.float64, per_pixel=True)

    @fill_docstring(images=_DASK_IMAGES)
    def predict_masks(self, X):
        """Segment the images with the estimator's ``predict_masks``, block-wise.

        {images}

        Returns
        -------
        masks : dask.array.Array or ndarray of shape (n_images, H, W)
            The pixels of regions with NFA at most epsilon.
        """
        return self._blockwise("predict_masks", X, bool, per_pixel=True)
