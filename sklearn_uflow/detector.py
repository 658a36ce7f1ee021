"""``UFlowDetector``: the four phases of U-Flow behind scikit-learn's outlier API."""

import numbers
import time
import warnings
from functools import partial

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context, clone
from sklearn.model_selection import KFold, ShuffleSplit, check_cv
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted
from tqdm.auto import tqdm

from ._docstrings import IMAGES, LOADING, fill_docstring
from ._images import as_image_array, check_images
from ._tensors import split_features
from ._torch_utils import TorchStateMixin, resolve_device, seed_from
from .acontrario import DEFAULT_EPSILON, ACotrarioSegmenter
from .anomaly_map import smoothed_anomaly_maps
from .features import CNN_PRESETS, BaseFeatureExtractor, make_feature_extractor
from .flow import build_uflow, latent_shapes, load_uflow
from .symmetries import AUGMENTATIONS, apply_symmetry, symmetries
from .training import fit_every_image, fit_held_out, lower_held_out_loss

__all__ = ["UFlowDetector"]

# cv="auto": cross-fitting, with this many folds, below this many training images (where the single split
# of the default validation_fraction would hold out fewer than 20).
AUTO_FOLDS = 5
AUTO_CROSS_FIT_BELOW = 200
# augmentation="auto": the copies tried for each shape of frame (training.lower_held_out_loss decides).
AUTO_AUGMENTATIONS = {"square": "eight", "oblong": "flips"}


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
        (0: the paper's map); ``"auto"``: 1/64 of the image's side. Fixed at
        ``fit`` with the masks' level (the segmenter's ``map_smoothing``);
        a fitted detector's maps at another width are
        :func:`~sklearn_uflow.anomaly_map.smoothed_anomaly_maps` of its
        :meth:`latents`.
    augmentation : {"auto", "none", "flips", "quarter_turns", "eight"}, default="auto"
        Also fit on flipped or turned copies of the training images, for
        parts whose pose varies or sets too small to show every variation;
        an epoch then takes each image once, as a copy drawn at random.
        ``"auto"``: the folds' flows are fitted with the copies
        (``"eight"``, or ``"flips"`` on an oblong frame) and without, and
        the copies are kept when they make the held-out images, as they
        are, more likely.
    cv : "auto", int, cross-validation generator or iterable, default="auto"
        Which images the flow is judged on (early stopping, augmentation,
        the null of the NFA, the masks' level), as scikit-learn's ``cv``:
        each split's flow trains on its training images and is judged on
        the others, all the splits' held-out images together. With several
        splits (cross-fitting), the final flow then trains on every image
        for the epochs the folds chose; with one, its flow is kept.

        - ``"auto"``: ``KFold(5, shuffle=True)`` below 200 images (at most
          one fold per image), ``ShuffleSplit(1,
          test_size=validation_fraction)`` from 200 on; nothing held out
          when ``validation_fraction`` is 0;
        - an int K >= 2: ``KFold(K, shuffle=True)``, shuffled by
          ``random_state`` (image folders are often in acquisition order);
        - a splitter (``KFold``, ``ShuffleSplit``, ...) or an iterable of
          ``(train, test)`` index arrays, used as given;
        - None: deprecated, one split holding out ``validation_fraction``;
          use ``ShuffleSplit(1, test_size=validation_fraction)``.

        More splits than images raise an error.
    max_epochs : int, default=25
        Maximum epochs, >= 1.
    batch_size : int, default=4
        Images per step, >= 1.
    learning_rate : float, default=1e-2
        AdamW's peak learning rate, > 0.
    weight_decay : float, default=0.01
        Decoupled weight decay of the couplings' weights, >= 0.
    validation_fraction : float, default=0.1
        Share of the training images that ``cv="auto"`` holds out by a
        single split (from 200 images on), in [0, 1); 0 holds none out.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping, >= 1.
    tol : float, default=1e-4
        Improvement (bits per dimension) that counts, >= 0.
    contamination : "auto" or float, default="auto"
        ``"auto"``: an image is an outlier when it has an epsilon-meaningful
        region. A float in (0, 0.5]: the largest share of training images
        flagged, each scored through a flow that did not train on it.
    epsilon : float, default=0.05
        The NFA threshold, > 0. Calibrated, the largest probability that a
        normal image holds a detection (0.05: one in twenty at most; 0.01:
        one in a hundred); with ``calibration="none"``, the expected number
        of false regions per normal image under the null law. It sets the
        masks and, with ``contamination="auto"``, the decision.
    nfa_null : {"empirical", "theory"}, default="empirical"
        The null law of the NFA: measured on held-out images, or the paper's
        i.i.d. N(0, 1).
    calibration : {"held_out", "none"}, default="held_out"
        ``"held_out"``: the NFA is mapped so that, measured on the held-out
        images, a normal image holds a region with ``NFA <= epsilon`` with
        probability at most ``epsilon`` (a conformal bound, for ``epsilon``
        down to one over the number of held-out images plus one).
        ``"none"``: the null law's bound alone, the paper's. Without
        held-out images there is nothing to calibrate on: ``"none"``.
    device : str or torch.device, default="auto"
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    random_state : int, RandomState instance or None, default=None
        Seeds the held-out images, the initial weights and the batch order.
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
    augmentation_validation_loss_ : dict of str to float
        The evidence for ``augmentation_``: the splits' lowest pooled
        held-out loss (bits per dimension) for each augmentation they were
        trained with (both, with ``augmentation="auto"``); empty when
        nothing was held out.
    n_splits_ : int
        Splits the flow was judged on (1 for a single split, and when
        nothing is held out).
    n_iter_ : int
        Epochs the kept flow trained for: the splits' best epoch (the
        final flow of cross-fitting trains that many), or ``max_epochs``
        when nothing is held out.
    loss_curve_ : list of float
        The kept flow's training loss per epoch, bits per dimension
        (``n_iter_`` values).
    validation_loss_curve_ : list of float
        The splits' pooled held-out loss per epoch, bits per dimension, up
        to the early stop; empty when nothing is held out.
    best_validation_loss_ : float or None
        Its lowest value, at epoch ``n_iter_``; None when nothing is held
        out.
    fit_seconds_ : float
        Wall time of ``fit``.
    segmenter_ : ACotrarioSegmenter
        The fitted a contrario step.
    device_ : torch.device
        Where the flow runs.

    See Also
    --------
    sklearn_uflow.ACotrarioSegmenter : The a contrario step alone, on latent rows.
    sklearn_uflow.CNNFeatureTransformer : The CNN feature steps.
    sklearn.ensemble.IsolationForest : The outlier detector whose interface it follows.

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
        "cv": [StrOptions({"auto"}), Interval(numbers.Integral, 2, None, closed="left"), "cv_object", None],
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
        "calibration": [StrOptions({"held_out", "none"})],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "n_jobs": [numbers.Integral, None],
    }

    def __init__(self, extractor="mscait", *, feature_shapes=None, image_size=None, n_flow_steps=4,
                 affine_clamp=2.0, image_context=True, positional_encoding=4, map_smoothing="auto",
                 augmentation="auto", cv="auto", max_epochs=25,
                 batch_size=4, learning_rate=1e-2, weight_decay=0.01, validation_fraction=0.1,
                 n_iter_no_change=5, tol=1e-4, contamination="auto", epsilon=DEFAULT_EPSILON,
                 nfa_null="empirical", calibration="held_out", device="auto", random_state=None, verbose=0,
                 n_jobs=None):
        self.extractor = extractor
        self.feature_shapes = feature_shapes
        self.image_size = image_size
        self.n_flow_steps = n_flow_steps
        self.affine_clamp = affine_clamp
        self.image_context = image_context
        self.positional_encoding = positional_encoding
        self.map_smoothing = map_smoothing
        self.augmentation = augmentation
        self.cv = cv
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
        self.calibration = calibration
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fit
    def _check_combinations(self):
        """The rules that tie parameters together, which no constraint of one parameter can say."""
        if self._precomputed and not self.feature_shapes:
            raise ValueError("extractor='precomputed' needs feature_shapes, the feature step's feature_shapes_.")
        if self._precomputed and self.augmentation not in ("auto", "none"):
            raise ValueError("extractor='precomputed' takes rows of features, which cannot be turned or "
                             "flipped: use augmentation='none'.")
        if self.nfa_null == "empirical" and not self._holds_out:
            raise ValueError("nfa_null='empirical' needs held-out images: set validation_fraction > 0 or cv to "
                             "a number of folds, or use nfa_null='theory'.")

    def _build_flow(self, seed=0):
        return build_uflow(self.feature_shapes_, n_steps=self.n_flow_steps, clamp=self.affine_clamp,
                           image_context=bool(self.image_context),
                           positional_encoding=int(self.positional_encoding), seed=seed)

    @_fit_context(prefer_skip_nested_validation=False)  # the feature step may be the user's, to validate too
    def fit(self, X, y=None):
        """Fit the flow on normal images.

        The steps, each judged on images its flow did not train on: the
        splits' flows are trained side by side and stopped together on their
        pooled held-out loss; with ``augmentation="auto"`` they are trained
        again with the turned copies, and the copies are kept when they make
        the held-out images, as they are, more likely; with several splits
        (cross-fitting) the final flow trains on every image for the epochs
        the splits chose. Then the a contrario step learns normality from the
        held-out images' latents, each through a flow that did not see it.

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
        start = time.perf_counter()
        self._check_combinations()
        images = _normal_images(self._as_input(X, reset=True), y)
        rng = check_random_state(self.random_state)
        splits = self._splits(len(images), rng)
        seed = seed_from(rng)
        self.device_ = resolve_device(self.device)
        self._fit_feature_step(images)
        n_held_out = sum(len(val) for _, val in splits)
        candidate = self._augmentation_candidate(n_held_out)
        turns = symmetries(candidate, self.image_size_)
        copies_asked = self.augmentation != "auto" and len(turns) > 1
        # Once per fit, since the backbone is frozen: the images as they are, then their copies if asked for.
        with self._progress(len(images) * (len(turns) if copies_asked else 1), "features", "image") as progress:
            originals = self._features(images, progress=progress)
            features = self._features(images, turns, progress, first=originals) if copies_asked else originals
        augmentation = self.augmentation if self.augmentation != "auto" else "none"

        with self._progress(self.max_epochs, "training", "epoch") as progress:
            # 1. The splits' flows: held-out losses, and the epochs to train for.
            fits = {augmentation: self._fit_splits(features, splits, len(features[0]) // len(images), seed,
                                                   progress, augmentation)}
            # 2. The copies (augmentation="auto"): the splits again, learning from the candidate's copies; kept
            # when the held-out images, as they are, are more likely.
            if self.augmentation == "auto" and candidate != "none":
                copies = self._features(images, turns, first=originals)
                fits[candidate] = self._fit_splits(copies, splits, len(turns), seed, progress, candidate)
            evidence = {}
            if n_held_out:
                augmentation, evidence = lower_held_out_loss(fits)
            if len(fits) > 1 and augmentation == candidate:
                features = copies
            chosen = fits[augmentation]
            # 3. The flow to keep: the single split's, or one trained on every image (cross-fitting).
            if len(splits) == 1:
                flow = chosen.flows[0]
                loss_curve = chosen.history["train_bpd"][: chosen.history["best_epoch"]]
            else:
                final = fit_every_image(partial(self._build_flow, seed), features,
                                        n_copies=len(features[0]) // len(images), epochs=chosen.history["best_epoch"],
                                        progress=progress, stage=f"all images, {augmentation}",
                                        **self._training_options(seed))
                flow, loss_curve = final.flow, final.train_bpd

        self.flow_, self.augmentation_ = flow.requires_grad_(False), augmentation
        self.augmentation_validation_loss_ = evidence
        self.n_splits_ = len(splits)
        self.n_iter_ = chosen.history["best_epoch"]
        self.loss_curve_ = [float(v) for v in loss_curve]
        self.validation_loss_curve_ = [float(v) for v in chosen.history["val_bpd"]]
        self.best_validation_loss_ = min(self.validation_loss_curve_) if self.validation_loss_curve_ else None
        # The a contrario step learns from the images as they are (rows 0 to n - 1), each through a flow that
        # did not train on it; with nothing held out, through the flow's own training images.
        judges = ([(flow, np.arange(len(images)))] if not n_held_out
                  else [(judge, val) for judge, (_, val) in zip(chosen.flows, splits)])
        held_out = self._latents_of_rows(features, *zip(*judges))
        self.segmenter_ = self._fit_segmenter(held_out, calibrated=n_held_out > 0)
        self.offset_ = self._fit_offset(held_out)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    @property
    def _holds_out(self):
        """Whether ``cv`` holds images out (``"auto"`` and None hold out ``validation_fraction``)."""
        return not (self.cv is None or isinstance(self.cv, str)) or bool(self.validation_fraction)

    def _cv(self, n_images, rng):
        """The splitter ``cv`` means, or None for nothing held out."""
        if self.cv is None:
            warnings.warn("cv=None (one split holding out validation_fraction) is deprecated and will mean 5 "
                          "folds, as in scikit-learn, in a future version; pass "
                          "cv=ShuffleSplit(1, test_size=validation_fraction), or cv='auto'.", FutureWarning)
        if self.cv is None or isinstance(self.cv, str):  # None, or "auto"
            if not self.validation_fraction:
                return None
            if self.cv == "auto" and n_images < AUTO_CROSS_FIT_BELOW:
                return KFold(min(AUTO_FOLDS, n_images), shuffle=True, random_state=rng)
            return ShuffleSplit(1, test_size=self.validation_fraction, random_state=rng)
        if isinstance(self.cv, numbers.Integral):
            return KFold(self.cv, shuffle=True, random_state=rng)
        return check_cv(self.cv)

    def _splits(self, n_images, rng):
        """Training and held-out image indices of each split (one split holding nothing out, when ``cv``
        holds nothing out)."""
        everything = np.arange(n_images)
        if self._holds_out and n_images < 2:
            raise ValueError(
                f"U-Flow needs at least 2 normal training images to hold some out of the flow's training "
                f"(for early stopping and the null of the NFA); got {n_images}. Add images, or set "
                "validation_fraction=0 and nfa_null='theory' to fit on every image with the theory's null."
            )
        cv = self._cv(n_images, rng)
        if cv is None:
            return [(everything, everything[:0])]
        n_splits = cv.get_n_splits(everything)
        if n_splits > n_images:  # as CalibratedClassifierCV: a fold per image at most
            raise ValueError(f"cv asks for {n_splits} splits of {n_images} training images; give at most "
                             f"{n_images}, or more images.")
        splits = [(np.sort(train), np.sort(val)) for train, val in cv.split(everything)]
        if any(not len(train) or not len(val) for train, val in splits):
            raise ValueError("every split of cv must train on some images and hold some out.")
        return splits

    def _training_options(self, seed):
        return dict(max_epochs=self.max_epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                    weight_decay=self.weight_decay, device=self.device_, seed=seed)

    def _fit_splits(self, features, splits, n_copies, seed, progress, augmentation):
        """The splits' flows, trained side by side and stopped on their pooled held-out loss."""
        n_held_out = sum(len(val) for _, val in splits)
        judged = f"{len(splits)} folds" if len(splits) > 1 else "held-out images" if n_held_out else "no held-out"
        return fit_held_out(partial(self._build_flow, seed), features, splits, n_copies=n_copies,
                            n_iter_no_change=self.n_iter_no_change, tol=self.tol, progress=progress,
                            stage=f"{judged}, {augmentation}", **self._training_options(seed))

    def _fit_feature_step(self, images):
        if self._precomputed:
            self.extractor_ = None
            self.feature_shapes_ = [tuple(int(v) for v in shape) for shape in self.feature_shapes]
            self.image_size_ = tuple(self.image_size or self.feature_shapes_[0][1:])
            self.n_channels_ = None
        else:
            extractor = clone(make_feature_extractor(self.extractor))
            # The detector counts the images it extracts; the feature step's own bars would count batches.
            self.extractor_ = extractor.set_params(device=self.device, verbose=0).fit(images[:1])
            self.feature_shapes_ = self.extractor_.feature_shapes_
            self.image_size_ = tuple(images.shape[1:3])
            self.n_channels_ = images.shape[-1]
        self.latent_shapes_ = latent_shapes(self.feature_shapes_)

    def _fit_segmenter(self, held_out, calibrated):
        """The a contrario step, which learns normality from latents of images their flow was not trained on
        (``calibrated``: there are such images to measure its false alarms on)."""
        return ACotrarioSegmenter(
            self.latent_shapes_, epsilon=self.epsilon, output_size=self.image_size_, nfa_null=self.nfa_null,
            map_smoothing=self.map_smoothing, calibration=self.calibration if calibrated else "none",
            n_jobs=self.n_jobs,
        ).fit_latents(held_out)

    def _fit_offset(self, held_out):
        """``contamination="auto"``: the decision at epsilon. A share: the highest score at which at most that
        share of the training images is flagged, each scored through a flow that did not train on it (its
        ``held_out`` latents), as a new image is. Most normal images hold no region and tie at the NFA's
        ceiling, so a percentile would flag them all."""
        if self.contamination == "auto":
            return float(np.log10(self.epsilon))
        scores = np.sort(np.concatenate([
            self._score([z[batch] for z in held_out])
            for batch in gen_batches(len(held_out[0]), self.scoring_batch_size)]))
        n_flagged = int(self.contamination * len(scores))
        # The last score before the first that would flag more than n_flagged images.
        within = scores[np.searchsorted(scores, scores, side="right") <= n_flagged]
        return float(within[-1]) if len(within) else float(np.nextafter(scores[0], -np.inf))

    def _progress(self, total, stage, unit):
        """A progress bar for one stage of the work, shown when ``verbose``."""
        return tqdm(total=total, desc=stage, unit=unit, disable=not self.verbose)

    # -------------------------------------------------------------- scoring
    def _batched(self, X, compute, dtype):
        """``compute`` on the latents of ``X``, batch by batch, its results
        written into arrays allocated once: the working memory stays flat
        however many images are scored. A ``compute`` returning a tuple
        (with a tuple of dtypes) fills several arrays from one pass. With
        ``verbose``, a bar counts the images when there is more than one batch."""
        check_is_fitted(self, "flow_")
        raw = self._as_input(X)
        several = isinstance(dtype, tuple)
        outs = None
        with tqdm(total=len(raw), desc="scoring", unit="image",
                  disable=not self.verbose or len(raw) <= self.scoring_batch_size) as progress:
            for batch in gen_batches(len(raw), self.scoring_batch_size):
                results = compute(self._latents_of(self._features(raw[batch])))
                results = results if several else (results,)
                if outs is None:
                    outs = [np.empty((len(raw), *np.shape(r)[1:]), dtype=t)
                            for r, t in zip(results, dtype if several else (dtype,))]
                for out, result in zip(outs, results):
                    out[batch] = result
                progress.update(len(results[0]))
        return tuple(outs) if several else outs[0]

    @property
    def scoring_batch_size(self):
        """Images scored together: the larger of ``batch_size`` and 16.

        Enough to keep the CPU busy, few enough that memory does not grow
        with the collection. Results depend on it in the last bits
        (convolution kernels are chosen per batch size), so
        ``batch.score_files`` and ``parallel.ImageParallelPostFit`` cut their
        work at multiples of it to reproduce in-process results exactly.
        """
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

    def _augmentation_candidate(self, n_held_out):
        """The copies ``fit`` learns from, or, with "auto", tries."""
        if self.augmentation != "auto":
            return self.augmentation
        if self._precomputed or not n_held_out:  # nothing to turn, or nothing to choose by
            return "none"
        return AUTO_AUGMENTATIONS["square" if self.image_size_[0] == self.image_size_[1] else "oblong"]

    def _features(self, batch, copies=((0, False),), progress=None, first=None):
        """Per-scale feature tensors of a batch of images or feature rows; with
        ``copies`` (symmetries, the identity first), of each turned copy in
        turn, copy-major. Extracted chunk by chunk into tensors allocated once
        (``progress`` counts the images extracted); ``first``, the features of
        the images as they are when the caller has them, fills the first copy."""
        if self._precomputed:
            return [f.float() for f in split_features(batch, self.feature_shapes_)]
        images = check_images(batch)
        if len(copies) == 1 and progress is None:
            return self.extractor_.extract(images)
        out = None
        for k, symmetry in enumerate(copies):
            for chunk in gen_batches(len(images), self.scoring_batch_size):
                if k == 0 and first is not None:
                    maps = [f[chunk] for f in first]
                else:
                    maps = self.extractor_.extract(apply_symmetry(images[chunk], symmetry) if k else images[chunk])
                if out is None:
                    out = [torch.empty((len(copies) * len(images), *m.shape[1:]), dtype=m.dtype) for m in maps]
                rows = slice(k * len(images) + chunk.start, k * len(images) + chunk.stop)
                for o, m in zip(out, maps):
                    o[rows] = m
                if progress is not None and not (k == 0 and first is not None):
                    progress.update(len(maps[0]))
        return out

    def _latents_of(self, features, flow=None):
        with torch.inference_mode():
            latents, _ = (flow or self.flow_)([f.to(self.device_) for f in features])
        return [z.float().contiguous() for z in latents]

    def _latents_of_rows(self, features, flows, rows):
        """Latents of the rows ``rows[k]`` of ``features`` through ``flows[k]``,
        batch by batch, concatenated."""
        parts = [self._latents_of([f[batch] for f in features], flow)
                 for flow, index in zip(flows, rows)
                 for batch in torch.as_tensor(index).split(self.scoring_batch_size)]
        return [torch.cat(scale) for scale in zip(*parts)]

    def _score(self, latents):
        return self._log_nfa(latents).min(axis=(1, 2))

    def _map(self, latents):
        # The segmenter's smoothing, which its level was fitted on.
        return smoothed_anomaly_maps(latents, self.image_size_, self.segmenter_.map_smoothing)

    def _log_nfa(self, latents, maps=None):
        return self.segmenter_.log_nfa_of_latents(latents, maps)

    @fill_docstring(images=IMAGES)
    def latents(self, X):
        """Map images to the flow's latents, scale by scale.

        {images}

        Returns
        -------
        latents : list of torch.Tensor of shape (n_images, C, H, W)
            One float32 tensor per scale, finest first, of the shapes
            ``latent_shapes_``; N(0, 1) under normality.
        """
        check_is_fitted(self, "flow_")
        scales = self._batched(X, lambda z: tuple(t.cpu().numpy() for t in z), (np.float32,) * len(self.latent_shapes_))
        return [torch.from_numpy(z) for z in scales]

    @fill_docstring(images=IMAGES)
    def anomaly_maps(self, X):
        """Compute the anomaly maps of the paper's equation 2, smoothed.

        The maps are at the images' size, filtered as ``map_smoothing`` said
        at ``fit``.

        {images}

        Returns
        -------
        maps : ndarray of shape (n_images, H, W), float32
            In [0, 1]; higher is more anomalous.
        """
        return self._batched(X, self._map, np.float32)

    @fill_docstring(images=IMAGES)
    def log_nfa_maps(self, X):
        """Compute the log10 number of false alarms of the region at each pixel.

        {images}

        Returns
        -------
        log_nfa : ndarray of shape (n_images, H, W), float64
            ``log10 NFA`` of the region that holds the pixel; pixels in no
            region carry ``segmenter_.log_nfa_ceiling_``. A pixel is detected
            when it is at most ``log10(epsilon)``.
        """
        return self._batched(X, self._log_nfa, np.float64)

    @fill_docstring(images=IMAGES)
    def maps_and_log_nfa(self, X):
        """Compute the anomaly maps and the log10 NFA maps in one pass.

        The backbone and the flow run once per image for both, as for
        everything ``sklearn-uflow run`` writes.

        {images}

        Returns
        -------
        maps : ndarray of shape (n_images, H, W), float32
            :meth:`anomaly_maps`.
        log_nfa : ndarray of shape (n_images, H, W), float64
            :meth:`log_nfa_maps`.
        """
        def both(latents):
            maps = self._map(latents)
            return maps, self._log_nfa(latents, maps)

        return self._batched(X, both, (np.float32, np.float64))

    @fill_docstring(images=IMAGES)
    def predict_masks(self, X):
        """Segment the anomalies: the pixels whose region has ``NFA <= epsilon``.

        Under normality about ``epsilon`` false regions per image are
        expected, so no labelled defect sets the threshold.

        {images}

        Returns
        -------
        masks : ndarray of shape (n_images, H, W), bool
            True on the detected regions, at the images' size; their extent
            is drawn by the segmenter's ``delineation``.
        """
        threshold = np.log10(self.epsilon)
        return self._batched(X, lambda z: self._log_nfa(z) <= threshold, bool)

    @fill_docstring(images=IMAGES)
    def score_samples(self, X):
        """Score each image by the smallest log10 NFA of its regions.

        The lower, the more anomalous: an image scoring at most
        ``log10(epsilon)`` holds an epsilon-meaningful region. (The paper's
        image score is the map's maximum, ``anomaly_maps(X).max(axis=(1, 2))``.)

        {images}

        Returns
        -------
        scores : ndarray of shape (n_images,), float64
            The smallest log10 NFA over each image; higher is more normal.
        """
        return self._batched(X, self._score, np.float64)

    @fill_docstring(images=IMAGES)
    def decision_function(self, X):
        """Shift the scores by the fitted offset: non-positive for outliers.

        {images}

        Returns
        -------
        decision : ndarray of shape (n_images,), float64
            ``score_samples(X) - offset_``.
        """
        return self.score_samples(X) - self.offset_

    @fill_docstring(images=IMAGES)
    def predict(self, X):
        """Predict whether each image is normal (+1) or anomalous (-1).

        With ``contamination="auto"`` an image is anomalous exactly when
        :meth:`predict_masks` detects a region in it.

        {images}

        Returns
        -------
        labels : ndarray of shape (n_images,), int
            +1 for normal images, -1 for anomalous ones.
        """
        return np.where(self.decision_function(X) <= 0, -1, 1)

    def __getstate__(self):
        # FrEIA's blocks hold lambdas, which do not pickle: store how the flow
        # was built and its weights (on the CPU), and build it again when loading.
        state = super().__getstate__()
        if "flow_" in state:
            flow = state["flow_"]
            state["flow_"] = (flow.build_options, {k: v.detach().cpu() for k, v in flow.state_dict().items()})
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if isinstance(self.__dict__.get("flow_"), tuple):
            self.flow_ = load_uflow(*self.flow_).to(self.device_).requires_grad_(False)

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
    @fill_docstring(loading=LOADING)
    def load(cls, path):
        """Read a detector written by :meth:`save`.

        {loading}
        """
        from .model_file import load_detector

        return load_detector(path)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.input_tags.positive_only = True  # pixel values are never negative
        tags.non_deterministic = False
        return tags
