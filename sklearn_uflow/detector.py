"""``UFlowDetector``: the four phases of U-Flow behind scikit-learn's outlier API."""

import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted

from ._images import as_image_array, check_images
from ._torch_utils import TorchStateMixin, resolve_device, seed_from
from .acontrario import ACotrarioSegmenter, NullModel
from .features import CNN_PRESETS, BaseFeatureExtractor, make_feature_extractor, split_features
from .flow import build_uflow, latent_shapes
from .scoring import smoothed_anomaly_maps
from .symmetries import AUGMENTATIONS, apply_symmetry, symmetries
from .training import FlowTraining

__all__ = ["UFlowDetector"]

# augmentation="auto": the candidates, and the share of max_epochs for which each is trained before the one
# with the lowest validation loss goes on alone.
AUTO_AUGMENTATIONS = {"square": ("none", "eight"), "oblong": ("none", "flips")}
AUTO_PROBE_SHARE = 0.2


def _prefixed(tensors, prefix):
    """The tensors whose names start with ``prefix``, without it."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _normal_images(images, y):
    """The images that ``y`` marks as normal: label 0, or an all-zero mask."""
    if y is None:
        return images
    y = np.asarray(y)
    if len(y) != len(images):
        raise ValueError(f"y has {len(y)} entries but X has {len(images)} images.")
    if y.ndim == 1:
        normal = y == 0
    elif y.ndim == 3:
        normal = ~y.reshape(len(y), -1).astype(bool).any(axis=1)
    else:
        raise ValueError(
            "y must be image labels of shape (n_images,) (0 = normal) or masks of shape "
            f"(n_images, H, W); got shape {y.shape}."
        )
    if not normal.any():
        raise ValueError("y marks no image as normal; U-Flow is fitted on normal (defect-free) images.")
    return images[normal]


class UFlowDetector(TorchStateMixin, OutlierMixin, BaseEstimator):
    """U-Flow: image anomaly detection and segmentation with a normalizing flow.

    Fitted on defect-free images, it maps a frozen backbone's multi-scale
    features through a U-shaped normalizing flow to latents that are N(0, 1)
    under normality, and gives each new image an anomaly map and a mask whose
    threshold needs no labelled defect.

    Parameters
    ----------
    extractor : str or BaseFeatureExtractor, default="mscait"
        The feature step: ``"mscait"`` (the paper's, for a GPU),
        ``"efficientnet_lite0"`` or ``"efficientnet_lite2"`` (offline, for a
        CPU), ``"resnet18"``, ``"wide_resnet50_2"``, an instance, or
        ``"precomputed"`` (``X`` holds rows of features).
    feature_shapes : list of (C, H, W), default=None
        With ``"precomputed"``: the feature step's ``feature_shapes_``.
    image_size : tuple of int, default=None
        With ``"precomputed"``: the ``(H, W)`` of the maps returned.
    n_flow_steps : int, default=4
        Flow steps per scale, >= 1.
    affine_clamp : float, default=2.0
        Soft bound of the couplings' log-scales, > 0.
    image_context : bool, default=True
        Whether couplings also see their scale's mean features. False gives
        the paper's flow.
    positional_encoding : int, default=4
        Cosine frequencies of the row and column that each coupling sees,
        >= 0. 0 gives the paper's couplings.
    map_smoothing : "auto" or float, default="auto"
        The maps' Gaussian filter, in cells of the finest latent grid, >= 0
        (0: the paper's map); ``"auto"``: 1/64 of the image's side.
    augmentation : {"auto", "none", "flips", "quarter_turns", "eight"}, default="auto"
        Also fit on flipped or turned copies of the training images, for
        parts whose pose varies, in as many steps. ``"auto"`` races a flow
        without copies against one with them and keeps the lower held-out
        loss.
    max_epochs : int, default=25
        Maximum epochs, >= 1.
    batch_size : int, default=4
        Images per step, >= 1.
    learning_rate : float, default=1e-2
        AdamW's peak learning rate, > 0.
    weight_decay : float, default=0.01
        Decoupled weight decay of the couplings' weights, >= 0.
    validation_fraction : float, default=0.1
        Share of the training images held out, in [0, 1).
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping, >= 1.
    tol : float, default=1e-4
        Improvement (bits per dimension) that counts, >= 0.
    contamination : "auto" or float, default="auto"
        ``"auto"``: an image is an outlier when it has an epsilon-meaningful
        region. A float in (0, 0.5]: the share of training outliers.
    epsilon : float, default=1.0
        The NFA threshold, > 0: the expected number of false regions per
        normal image (1: about one per image; 0.01: one per hundred). It
        sets the masks and, with ``contamination="auto"``, the decision.
    nfa_null : {"empirical", "theory"}, default="empirical"
        The null law of the NFA: measured on held-out images, or the paper's
        i.i.d. N(0, 1).
    device : str or torch.device, default="auto"
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    random_state : int, RandomState instance or None, default=None
        Seeds the held-out split, the initial weights and the batch order.
    verbose : int, default=0
        Progress bars when positive.
    n_jobs : int, default=None
        Images segmented in parallel by joblib.

    Attributes
    ----------
    extractor_ : BaseFeatureExtractor or None
        The fitted feature step, or None.
    flow_ : torch.nn.Module
        The trained flow.
    feature_shapes_, latent_shapes_ : list of tuple of int
        ``(C, H, W)`` per scale, finest first.
    image_size_, n_channels_ : tuple of int, int
        ``(H, W)`` and channels of the training images.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    augmentation_ : str
        The augmentation fitted with.
    segmenter_ : ACotrarioSegmenter
        The fitted a contrario step.
    history_ : dict
        Losses per epoch, best epoch, seconds.
    device_ : torch.device
        Where the flow runs.

    Notes
    -----
    ``score_samples`` is the image's smallest log10 NFA; the paper's image
    score is ``anomaly_maps(X).max(axis=(1, 2))``.

    Examples
    --------
    >>> from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
    >>> from sklearn_uflow.datasets import make_defects
    >>> X, y, masks = make_defects(n_samples=24, image_size=64, random_state=0)
    >>> detector = UFlowDetector(CNNFeatureTransformer(input_size=64), max_epochs=2,
    ...                          random_state=0).fit(X[y == 0])
    >>> detector.anomaly_maps(X[:2]).shape
    (2, 64, 64)
    """

    _parameter_constraints = {
        "extractor": [StrOptions({"mscait", "precomputed", *CNN_PRESETS}), BaseFeatureExtractor],
        "feature_shapes": [list, tuple, None],
        "image_size": [tuple, list, None],
        "n_flow_steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "affine_clamp": [Interval(numbers.Real, 0, None, closed="neither")],
        "image_context": ["boolean"],
        "positional_encoding": [Interval(numbers.Integral, 0, None, closed="left")],
        "map_smoothing": [StrOptions({"auto"}), Interval(numbers.Real, 0, None, closed="left")],
        "augmentation": [StrOptions({"auto", *AUGMENTATIONS})],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "contamination": [StrOptions({"auto"}), Interval(numbers.Real, 0, 0.5, closed="right")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "nfa_null": [StrOptions({"empirical", "theory"})],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "n_jobs": [numbers.Integral, None],
    }

    def __init__(self, extractor="mscait", *, feature_shapes=None, image_size=None, n_flow_steps=4,
                 affine_clamp=2.0, image_context=True, positional_encoding=4, map_smoothing="auto",
                 augmentation="auto", max_epochs=25,
                 batch_size=4, learning_rate=1e-2, weight_decay=0.01, validation_fraction=0.1,
                 n_iter_no_change=5, tol=1e-4, contamination="auto", epsilon=1.0, nfa_null="empirical",
                 device="auto", random_state=None, verbose=0, n_jobs=None):
        self.extractor = extractor
        self.feature_shapes = feature_shapes
        self.image_size = image_size
        self.n_flow_steps = n_flow_steps
        self.affine_clamp = affine_clamp
        self.image_context = image_context
        self.positional_encoding = positional_encoding
        self.map_smoothing = map_smoothing
        self.augmentation = augmentation
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.contamination = contamination
        self.epsilon = epsilon
        self.nfa_null = nfa_null
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fit
    def _check_params(self):
        """What the constraints of each parameter alone cannot say."""
        self._validate_params()
        if self._precomputed and not self.feature_shapes:
            raise ValueError("extractor='precomputed' needs feature_shapes, the feature step's feature_shapes_.")
        if self._precomputed and self.augmentation not in ("auto", "none"):
            raise ValueError("extractor='precomputed' takes rows of features, which cannot be turned or "
                             "flipped: use augmentation='none'.")
        if self.nfa_null == "empirical" and not self.validation_fraction:
            raise ValueError("nfa_null='empirical' needs held-out images: set validation_fraction > 0, "
                             "or use nfa_null='theory'.")

    def _build_flow(self, seed=0):
        return build_uflow(self.feature_shapes_, n_steps=self.n_flow_steps, clamp=self.affine_clamp,
                           image_context=bool(self.image_context),
                           positional_encoding=int(self.positional_encoding), seed=seed)

    def fit(self, X, y=None):
        """Fit the flow on normal images.

        Parameters
        ----------
        X : array-like of shape (n_images, H, W, C) or (n_images, H, W)
            Defect-free images (``uint8`` or float in [0, 1]).
        y : array-like of shape (n_images,) or (n_images, H, W), default=None
            Optional labels (0 = normal) or masks; only normal images are
            used.

        Returns
        -------
        self : object
            The fitted detector.
        """
        self._check_params()
        images = _normal_images(self._as_input(X, reset=True), y)
        rng = check_random_state(self.random_state)
        n_val = math.ceil(self.validation_fraction * len(images)) if self.validation_fraction else 0
        if len(images) - n_val < 1 or (self.validation_fraction and len(images) < 2):
            raise ValueError(
                f"U-Flow needs at least {2 if self.validation_fraction else 1} normal training images "
                f"(one for training, one for validation with validation_fraction="
                f"{self.validation_fraction}); got {len(images)}. Add images or set validation_fraction=0."
            )
        order = rng.permutation(len(images))
        train_index, val_index = np.sort(order[n_val:]), np.sort(order[:n_val])

        self.device_ = resolve_device(self.device)
        if self._precomputed:
            self.extractor_ = None
            self.feature_shapes_ = [tuple(int(v) for v in shape) for shape in self.feature_shapes]
            self.image_size_ = tuple(self.image_size or self.feature_shapes_[0][1:])
            self.n_channels_ = None
        else:
            extractor = clone(make_feature_extractor(self.extractor))
            self.extractor_ = extractor.set_params(device=self.device, verbose=self.verbose).fit(images[:1])
            self.feature_shapes_ = self.extractor_.feature_shapes_
            self.image_size_ = tuple(images.shape[1:3])
            self.n_channels_ = images.shape[-1]
        # Once per fit, since the backbone is frozen; split first, so that no
        # copy of the whole feature cache is ever made. The held-out images
        # are never turned copies of training images.
        candidates = self._augmentation_candidates(bool(n_val))
        copies = symmetries(candidates[-1], self.image_size_)
        train_features = self._features(images[train_index], copies)
        val_features = self._features(images[val_index]) if n_val else None
        self.latent_shapes_ = latent_shapes(self.feature_shapes_)

        seed = seed_from(rng)
        options = dict(max_epochs=self.max_epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                       weight_decay=self.weight_decay,
                       n_iter_no_change=self.n_iter_no_change, tol=self.tol, device=self.device_, seed=seed,
                       verbose=self.verbose)
        trainings = []
        for name in candidates:  # each candidate's copies come first among the largest's
            n_copies = len(symmetries(name, self.image_size_))
            features = [f[: n_copies * len(train_index)] for f in train_features]
            flow = self._build_flow(seed)
            flow.standardize_with(features)
            trainings.append(FlowTraining(flow.to(self.device_), features, val_features, n_copies=n_copies,
                                          **options))
        if len(trainings) > 1:
            # A race: every candidate trains for the first epochs, the one whose
            # flow gives the held-out images the lowest loss goes on alone.
            for _ in range(max(1, round(AUTO_PROBE_SHARE * self.max_epochs))):
                for training in trainings:
                    training.run_epoch()
        raced = [training.best_val_bpd for training in trainings]
        best = int(np.argmin(raced))
        self.augmentation_ = candidates[best]
        self.history_ = trainings[best].finish()
        if len(trainings) > 1:
            self.history_["augmentation_val_bpd"] = dict(zip(candidates, raced))
        self.flow_ = trainings[best].flow
        # What follows reads the training images as they are; free their copies.
        train_features = [f[: len(train_index)].clone() for f in train_features] if len(copies) > 1 else train_features
        del trainings
        self.flow_.requires_grad_(False)
        # The segmenter learns normality from images the flow was not trained on.
        self.segmenter_ = ACotrarioSegmenter(
            self.latent_shapes_, epsilon=self.epsilon, output_size=self.image_size_, null=self.nfa_null,
            map_smoothing=self.map_smoothing, n_jobs=self.n_jobs,
        ).fit_latents(self._latents_of(val_features if n_val else train_features))
        if self.contamination == "auto":
            self.offset_ = float(np.log10(self.epsilon))
        else:  # the scores of the training images, from the cached features
            scores = [self._score(self._latents_of([f[i : i + self.scoring_batch_size] for f in features]))
                      for features in (train_features, val_features) if features is not None
                      for i in range(0, len(features[0]), self.scoring_batch_size)]
            self.offset_ = float(np.percentile(np.concatenate(scores), 100.0 * self.contamination))
        return self

    # ---------------------------------------------------------- model files
    def get_fitted_state(self):
        """The fitted state, as :mod:`~sklearn_uflow.model_file` stores it.

        Returns
        -------
        tensors : dict of str to torch.Tensor
            The flow's weights (``flow.*``) and the backbone's
            (``extractor.*``), on the CPU.
        state : dict
            The other fitted attributes, as JSON-serialisable values.
        """
        check_is_fitted(self, "flow_")
        if self.extractor_ is None:
            raise TypeError("a detector on precomputed features has no feature step to save; save the Pipeline.")
        backbone, extractor_state = self.extractor_.get_fitted_state()
        tensors = {**{f"flow.{k}": v for k, v in self.flow_.state_dict().items()},
                   **{f"extractor.{k}": v for k, v in backbone.items()}}
        segmenter = self.segmenter_
        state = {
            "extractor_": extractor_state, "latent_shapes_": self.latent_shapes_, "image_size_": self.image_size_,
            "n_channels_": self.n_channels_, "offset_": self.offset_, "augmentation_": self.augmentation_,
            "segmenter_": {"params": segmenter.get_params(), "null_": [list(m) for m in segmenter.null_],
                           "map_level_": segmenter.map_level_},
            "history_": self.history_,
        }
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, state

    def set_fitted_state(self, tensors, state):
        """Restore what :meth:`get_fitted_state` returned, on this
        detector's ``device`` (the CPU where CUDA is absent).

        Returns
        -------
        self : object
        """
        self._check_params()
        self.device_ = resolve_device(self.device) if torch.cuda.is_available() else torch.device("cpu")
        extractor = clone(make_feature_extractor(self.extractor))
        self.extractor_ = extractor.set_fitted_state(_prefixed(tensors, "extractor."), state["extractor_"],
                                                     self.device_)
        self.feature_shapes_ = self.extractor_.feature_shapes_
        self.latent_shapes_ = [tuple(s) for s in state["latent_shapes_"]]
        self.image_size_ = tuple(state["image_size_"])
        self.n_channels_ = int(state["n_channels_"])
        self.offset_ = float(state["offset_"])
        self.augmentation_ = str(state["augmentation_"])
        segmenter = state["segmenter_"]
        params = {**segmenter["params"], "latent_shapes": self.latent_shapes_,
                  "output_size": tuple(segmenter["params"]["output_size"])}
        self.segmenter_ = ACotrarioSegmenter(**params).restore_fit(
            [NullModel(*map(float, m)) for m in segmenter["null_"]], float(segmenter["map_level_"]))
        self.history_ = state["history_"]
        flow = self._build_flow()
        flow.load_state_dict(_prefixed(tensors, "flow."), strict=True)
        self.flow_ = flow.to(self.device_).eval().requires_grad_(False)
        return self

    # -------------------------------------------------------------- scoring
    def _batched(self, X, compute, dtype):
        """``compute`` on the latents of ``X``, batch by batch, its results
        written into arrays allocated once: the working memory stays flat
        however many images are scored. A ``compute`` returning a tuple
        (with a tuple of dtypes) fills several arrays from one pass."""
        check_is_fitted(self, "flow_")
        raw = self._as_input(X)
        several = isinstance(dtype, tuple)
        outs = None
        for start in range(0, len(raw), self.scoring_batch_size):
            results = compute(self._latents_of(self._features(raw[start : start + self.scoring_batch_size])))
            results = results if several else (results,)
            if outs is None:
                outs = [np.empty((len(raw), *np.shape(r)[1:]), dtype=t)
                        for r, t in zip(results, dtype if several else (dtype,))]
            for out, result in zip(outs, results):
                out[start : start + len(result)] = result
        return tuple(outs) if several else outs[0]

    @property
    def scoring_batch_size(self):
        """Images scored together: enough to keep the CPU busy, few enough
        that memory does not grow with the collection. Results depend on it in
        the last bits (convolution kernels are chosen per batch size), so
        ``batch.score_files`` and ``parallel.ImageParallelPostFit`` cut their
        work at multiples of it to reproduce in-process results exactly."""
        return max(self.batch_size, 16)

    @property
    def _precomputed(self):
        return isinstance(self.extractor, str) and self.extractor == "precomputed"

    def _as_input(self, X, reset=False):
        """Images (layout checked, values not yet), or rows of features."""
        if not self._precomputed:
            if reset:
                return as_image_array(X)
            return as_image_array(X, n_channels=self.n_channels_, image_size=self.image_size_)
        rows = check_array(X, dtype=(np.float32, np.float64))
        expected = sum(int(np.prod(s)) for s in (self.feature_shapes if reset else self.feature_shapes_))
        if rows.shape[1] != expected:
            raise ValueError(f"X has {rows.shape[1]} features per row, but feature_shapes describe {expected}.")
        return rows

    def _augmentation_candidates(self, validated):
        """The augmentations that ``fit`` trains a flow for, the largest last."""
        if self.augmentation != "auto":
            return (self.augmentation,)
        if self._precomputed or not validated:  # nothing to turn, or nothing to choose by
            return ("none",)
        return AUTO_AUGMENTATIONS["square" if self.image_size_[0] == self.image_size_[1] else "oblong"]

    def _features(self, batch, copies=((0, False),)):
        """Per-scale feature tensors of a batch of images or feature rows; with
        ``copies`` (symmetries), of each turned copy in turn, copy-major."""
        if self._precomputed:
            return [f.float() for f in split_features(batch, self.feature_shapes_)]
        images = check_images(batch)
        out = None
        for k, symmetry in enumerate(copies):  # written into tensors allocated once
            maps = self.extractor_.extract(apply_symmetry(images, symmetry) if k else images)
            if len(copies) == 1:
                return maps
            if out is None:
                out = [torch.empty((len(copies) * len(images), *m.shape[1:]), dtype=m.dtype) for m in maps]
            for o, m in zip(out, maps):
                o[k * len(images) : (k + 1) * len(images)] = m
        return out

    def _latents_of(self, features):
        with torch.inference_mode():
            latents, _ = self.flow_([f.to(self.device_) for f in features])
        return [z.float().contiguous() for z in latents]

    def _score(self, latents):
        return self._log_nfa(latents).min(axis=(1, 2))

    def _map(self, latents):
        return smoothed_anomaly_maps(latents, self.image_size_, self.map_smoothing)

    def _log_nfa(self, latents, maps=None):
        return self.segmenter_.log_nfa_of_latents(latents, maps)

    def latents(self, X):
        """The flow's latents: a list of ``(n_images, C, H, W)`` tensors, finest first."""
        check_is_fitted(self, "flow_")
        scales = self._batched(X, lambda z: tuple(t.cpu().numpy() for t in z), (np.float32,) * len(self.latent_shapes_))
        return [torch.from_numpy(z) for z in scales]

    def anomaly_maps(self, X):
        """Anomaly maps (the paper's equation 2) at the images' size,
        smoothed by ``map_smoothing``.

        Parameters
        ----------
        X : array-like of shape (n_images, H, W, C) or (n_images, H, W)
            Images of the size seen in ``fit``.

        Returns
        -------
        maps : ndarray of shape (n_images, H, W), float32
            In [0, 1]; higher is more anomalous.
        """
        return self._batched(X, self._map, np.float32)

    def log_nfa_maps(self, X):
        """log10 of the number of false alarms of the region at each pixel.

        Parameters
        ----------
        X : array-like of shape (n_images, H, W, C) or (n_images, H, W)
            Images of the size seen in ``fit``.

        Returns
        -------
        log_nfa : ndarray of shape (n_images, H, W), float64
            ``log10 NFA`` of the region that holds the pixel; pixels in no
            region carry ``segmenter_.log_nfa_ceiling_``. A pixel is detected
            when it is at most ``log10(epsilon)``.
        """
        return self._batched(X, self._log_nfa, np.float64)

    def maps_and_log_nfa(self, X):
        """:meth:`anomaly_maps` and :meth:`log_nfa_maps` from one pass of the
        backbone and the flow.

        Parameters
        ----------
        X : array-like of shape (n_images, H, W, C) or (n_images, H, W)
            Images of the training images' size.

        Returns
        -------
        maps : ndarray of shape (n_images, H, W), float32
        log_nfa : ndarray of shape (n_images, H, W), float64
        """
        def both(latents):
            maps = self._map(latents)
            # The segmenter's level was fitted on maps of its own smoothing,
            # which a later set_params(map_smoothing=...) does not change.
            same = self.segmenter_.map_smoothing == self.map_smoothing
            return maps, self._log_nfa(latents, maps if same else None)

        return self._batched(X, both, (np.float32, np.float64))

    def predict_masks(self, X):
        """Segmentation masks: pixels whose region has ``NFA <= epsilon``.

        Returns
        -------
        masks : ndarray of shape (n_images, H, W), bool
        """
        threshold = np.log10(self.epsilon)
        return self._batched(X, lambda z: self._log_nfa(z) <= threshold, bool)

    def score_samples(self, X):
        """Smallest log10 NFA of each image; higher means more normal.

        Returns
        -------
        scores : ndarray of shape (n_images,), float64
        """
        return self._batched(X, self._score, np.float64)

    def decision_function(self, X):
        """``score_samples(X) - offset_``: non-positive for outliers.

        Returns
        -------
        decision : ndarray of shape (n_images,), float64
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """+1 for normal images, -1 for anomalous ones.

        With ``contamination="auto"`` an image is anomalous exactly when
        :meth:`predict_masks` detects a region in it.

        Returns
        -------
        labels : ndarray of shape (n_images,), int
        """
        return np.where(self.decision_function(X) <= 0, -1, 1)

    def __getstate__(self):
        # FrEIA's blocks hold lambdas, which do not pickle: store the flow's
        # weights (on the CPU) and rebuild the graph when loading.
        state = super().__getstate__()
        if "flow_" in state:
            state["flow_"] = {k: v.detach().cpu() for k, v in state["flow_"].state_dict().items()}
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if isinstance(self.__dict__.get("flow_"), dict):
            flow = self._build_flow()
            flow.load_state_dict(self.flow_)
            self.flow_ = flow.to(self.device_).eval().requires_grad_(False)

    def save(self, path):
        """Write the fitted detector to a safe model file (no pickle).

        The file holds the weights as safetensors and the parameters and
        fitted attributes as JSON, with a format version and a checksum;
        :meth:`load` reads it without executing anything it contains. (Pickle
        and joblib work too, but only for files you trust.)

        Parameters
        ----------
        path : str or path-like
            Destination, e.g. ``"model.uflow"``.
        """
        from .model_file import save_detector

        check_is_fitted(self, "flow_")
        if self._precomputed:
            raise TypeError("a detector with extractor='precomputed' has no feature step to save; save the "
                            "Pipeline with joblib, or fit a detector with its own extractor.")
        save_detector(self, path)

    @classmethod
    def load(cls, path):
        """Read a detector written by :meth:`save`.

        Raises :class:`~sklearn_uflow.model_file.ModelFileError` (a
        ``ValueError``) for a missing, truncated, corrupted or foreign file.
        """
        from .model_file import load_detector

        return load_detector(path)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.input_tags.positive_only = True  # pixel values are never negative
        tags.non_deterministic = False
        return tags
