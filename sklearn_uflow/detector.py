"""``UFlowDetector``: the four phases of U-Flow behind scikit-learn's outlier API."""

import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

from ._images import as_image_array, check_images
from ._torch_utils import resolve_device, seed_from
from .acontrario import ACotrarioSegmenter
from .features import _TorchStateMixin, make_feature_extractor, split_features
from .flow import FlowTraining, build_uflow, latent_shapes
from .scoring import smoothed_anomaly_maps
from .symmetries import apply_symmetry, symmetries

__all__ = ["UFlowDetector"]

# augmentation="auto": the candidates, and the share of max_epochs for which each is trained before the one
# with the lowest validation loss goes on alone.
AUTO_AUGMENTATIONS = {"square": ("none", "eight"), "oblong": ("none", "flips")}
AUTO_PROBE_SHARE = 0.2


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


class UFlowDetector(_TorchStateMixin, OutlierMixin, BaseEstimator):
    """U-Flow: image anomaly detection and segmentation with a normalizing flow.

    Fitted on defect-free images, it maps the multi-scale features of a frozen
    backbone through a U-shaped normalizing flow to latents that are
    N(0, 1) under normality. From the latents it gives, for each new image,
    an anomaly map (:meth:`anomaly_maps`), a map of the number of false alarms
    (:meth:`log_nfa_maps`) and a segmentation mask whose threshold ``epsilon``
    is the expected number of false regions per image under normality, so it
    needs no labelled defects (:meth:`predict_masks`).

    Parameters
    ----------
    extractor : str or BaseFeatureExtractor, default="mscait"
        The feature step: ``"mscait"`` (the paper's MS-CaiT, for a GPU),
        ``"efficientnet_lite0"`` (offline ImageNet weights, fast on a CPU),
        ``"efficientnet_lite2"`` (offline too, deeper and slower),
        ``"resnet18"``, ``"wide_resnet50_2"``, or a feature transformer
        instance (to set its ``input_size``, ``weights``...).
        ``"precomputed"``: ``X`` holds rows of features made by a feature
        step, as the last step of a :class:`~sklearn.pipeline.Pipeline`;
        ``feature_shapes`` then says how to read them.
    feature_shapes : list of (C, H, W), default=None
        With ``extractor="precomputed"``: the feature step's
        ``feature_shapes_``. Ignored otherwise.
    image_size : tuple of int, default=None
        With ``extractor="precomputed"``: the ``(H, W)`` of the images the
        features came from, the size of the maps and masks returned (default:
        the finest feature map's size). Ignored otherwise.
    n_flow_steps : int, default=4
        Flow steps per scale.
    affine_clamp : float, default=2.0
        Bound of the coupling log-scales, soft-clamped as
        ``affine_clamp * tanh(s)``; 2.0 scored better than 1.0 and 3.0 on
        held-out images (``benchmarks/select_clamp.py``).
    image_context : bool, default=True
        Whether each coupling also sees the image's context: its scale's
        features averaged over the whole image. This lets the flow flag a
        large region whose texture is normal for some images but not for the
        rest of this one. Chosen on synthetic defects planted in held-out
        training images (``benchmarks/select_image_context.py``), where it
        helps most families but loses to the paper's flow on large changes of
        surface finish within an image: prefer False, the paper's flow, where
        defects are mostly of that kind.
    positional_encoding : int, default=4
        Number of frequencies of the cosines of the row and of the column
        that each coupling also sees, through a map added to its hidden
        layer (:func:`~sklearn_uflow.flow.position_cosines`): what is
        normal may depend on where it is in the image (a tile's edges,
        uneven lighting, a part held in a fixture). Chosen on held-out
        images over three seeds (``benchmarks/select_positions.py``): 4
        raised the large planted defects of Magnetic Tile by about 3 points
        of pixel AUROC and left MPDD, whose parts hang at any angle, within
        0.3 point. 0 gives the paper's couplings, which do not know where
        they are.
    map_smoothing : "auto" or float, default="auto"
        Standard deviation of the Gaussian filter applied to the anomaly
        maps. ``"auto"``: 1/64 of the image's height and width, the width
        chosen on held-out images with the Lite0 preset at its default input
        size, 256 (one cell of its 64x64 finest latent grid;
        ``benchmarks/select_pooled_score.py``), kept in proportion to the
        image whatever the backbone and its input size. A float: in cells of the finest latent
        grid (the backbone's input size / 4 for the CNN presets, 28 cells for
        MS-CaiT); 0 keeps the paper's map as it is. The masks follow this
        map's outline (see ``segmenter_``). A wider filter helps large, faint
        defects (2.0 at input size 256 raised the large held-out ones) and
        widens the halos around strong ones, whose false positives then hide
        small defects elsewhere.
    augmentation : {"auto", "none", "flips", "quarter_turns", "eight"}, default="auto"
        Also fit on copies of the training images turned by symmetries of
        the frame (:mod:`~sklearn_uflow.symmetries`), for parts whose pose
        varies: ``"flips"`` (left-right, up-down and both),
        ``"quarter_turns"`` (square images only) or ``"eight"`` (both). The
        backbone runs once per copy; an epoch still takes each image once,
        in a copy drawn at random, so training takes as many steps as
        without. ``"auto"`` lets the data decide: a flow without copies and
        one with ``"eight"`` (``"flips"`` for oblong images) train side by
        side for the first fifth of ``max_epochs``, then the one whose
        held-out images have the lower loss goes on alone; without held-out
        images, ``"none"``. Held-out images are never copies. See
        ``augmentation_``.
    max_epochs : int, default=25
        Maximum passes over the training images. The learning rate decays
        to zero over them. With several hundred training images, 15 fit in
        60 % of the time and scored as well on held-out defects.
    batch_size : int, default=4
        Images per optimisation step. Batches of eight with
        ``learning_rate=0.014`` fit about a fifth faster on a 2-core CPU and
        scored 0.15 point lower on held-out defects
        (``benchmarks/select_batch_size.py``).
    learning_rate : float, default=1e-2
        Adam's peak learning rate (warm-up, then cosine decay per iteration).
        This default, ``max_epochs`` and ``map_smoothing`` were chosen on
        synthetic defects planted in held-out good training images of the
        benchmark datasets and on ``make_defects``, never on test images
        (see the benchmarks page of the documentation).
    weight_decay : float, default=0.01
        Decoupled weight decay (AdamW) of the couplings' weights: each step
        shrinks them by ``learning_rate * weight_decay`` (times the
        schedule's factor) of their size, towards the identity coupling. Not
        an L2 term added to the gradient: the loss sums over every feature
        of an image, and its gradients are hundreds of times the weights.
        Chosen on held-out images: 0.01 beat none over three seeds, and 0.1
        and 1 did worse with one; 0 trains without it.
    feature_noise : float, default=0.0
        Gaussian noise added to the training features at every step, in
        standard deviations of each channel: the flow fits their density
        smoothed by it. The validation loss and the scores use the features
        as they are. On held-out images its effect followed the data, not
        the number of training images: 0.05 and 0.1 raised the AUPRO of
        MPDD's small and large planted defects by 0.9 to 2.8 points, and
        lowered the scores of Magnetic Tile (most on its large defects; also
        when fitted on 49 of its images) and of small synthetic sets. No
        noise, the default, was kept over three seeds.
    validation_fraction : float, default=0.1
        Share of the training images held out to stop training early and
        keep the best weights. 0 trains for ``max_epochs`` on all images.
    n_iter_no_change : int, default=5
        Epochs without improvement of the validation loss before stopping.
    tol : float, default=1e-4
        Improvement (bits per dimension) that counts.
    contamination : "auto" or float, default="auto"
        ``"auto"``: an image is an outlier when it has an epsilon-meaningful
        region (``offset_ = log10(epsilon)``), a decision fixed by theory. A
        float in (0, 0.5]: the share of training images declared outliers,
        setting ``offset_`` at that percentile of their scores.
    epsilon : float, default=1.0
        The number of false alarms (NFA) that a region may have and still be
        detected, > 0: under normality, at most ``epsilon`` false regions
        per image are expected, so 1 means about one false region per image
        in the worst case and 0.01 one per hundred images. It sets the masks
        and, with ``contamination="auto"``, the image decision; it needs no
        labelled defects. Smaller values detect fewer, stronger regions.
    nfa_null : {"empirical", "theory"}, default="empirical"
        The law of the latents of normal images that the NFA is computed
        against. ``"empirical"``: the scaled chi-square law and spatial
        correlation measured on the held-out normal images
        (:func:`~sklearn_uflow.acontrario.fit_null`); a trained flow leaves
        channels and neighbouring pixels dependent, and the theory then
        flags regions in normal images. ``"theory"``: i.i.d. N(0, 1), as the
        paper assumes of a perfect flow.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``; resolved into ``device_``.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, the initial weights and the batch order;
        with an int, fitting is reproducible on a CPU (on one kind of CPU:
        another one's floating-point kernels move the scores in the second
        decimal).
    verbose : int, default=0
        Progress bars for feature extraction and training.
    n_jobs : int, default=None
        Images segmented in parallel by joblib.

    Attributes
    ----------
    extractor_ : BaseFeatureExtractor or None
        The fitted feature step (None with ``extractor="precomputed"``).
    flow_ : torch.nn.Module
        The trained flow.
    feature_shapes_, latent_shapes_ : list of tuple of int
        ``(C, H, W)`` per scale, finest first.
    image_size_ : tuple of int
        ``(H, W)`` of the training images; new images must match it.
    n_channels_ : int
        Channels of the training images.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    augmentation_ : str
        The augmentation the flow was fitted with (with ``"auto"``, the
        one chosen; ``history_["augmentation_val_bpd"]`` holds the
        candidates' held-out losses when they raced).
    segmenter_ : ACotrarioSegmenter
        The a contrario step, fitted on the latents of the held-out images
        (of the training images with ``validation_fraction=0``): its
        ``null_`` is the law of normal latents per scale, its
        ``map_level_`` what the anomaly map of a normal image reaches (the
        median of the held-out maps' maxima). The masks, NFA maps and
        scores come from it; set its ``delineation`` to ``"tree"`` for the
        paper's regions.
    history_ : dict
        Training and validation loss per epoch (bits per dimension), the
        best epoch and the training time in seconds.
    device_ : torch.device
        Where the flow runs.

    Notes
    -----
    ``score_samples`` is the smallest log10 NFA of the image (higher means
    more normal): it is what the unsupervised decision thresholds, so scores,
    decisions and masks agree. The paper's image score (Appendix A), the
    maximum of the anomaly map, is ``anomaly_maps(X).max(axis=(1, 2))``.

    ``fit`` accepts ``y``: image labels (0 = normal) or masks; only the
    normal images are used, so the detector can be cross-validated on a
    labelled test set with the scorers of :mod:`sklearn_uflow.metrics`.

    Examples
    --------
    >>> from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
    >>> from sklearn_uflow.datasets import make_defects
    >>> X, y, masks = make_defects(n_samples=24, image_size=64, random_state=0)
    >>> detector = UFlowDetector(CNNFeatureTransformer(input_size=64), max_epochs=2,
    ...                          random_state=0).fit(X[y == 0])
    >>> detector.anomaly_maps(X[:2]).shape
    (2, 64, 64)
    >>> detector.predict_masks(X[:2]).dtype
    dtype('bool')
    """

    def __init__(self, extractor="mscait", *, feature_shapes=None, image_size=None, n_flow_steps=4,
                 affine_clamp=2.0, image_context=True, positional_encoding=4, map_smoothing="auto",
                 augmentation="auto", max_epochs=25,
                 batch_size=4, learning_rate=1e-2, weight_decay=0.01, feature_noise=0.0, validation_fraction=0.1,
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
        self.feature_noise = feature_noise
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
        if not (isinstance(self.epsilon, numbers.Real) and self.epsilon > 0):
            raise ValueError(f"epsilon must be a positive number, got {self.epsilon!r}.")
        if self.contamination != "auto" and not (
            isinstance(self.contamination, numbers.Real) and 0 < self.contamination <= 0.5
        ):
            raise ValueError(f"contamination must be 'auto' or a float in (0, 0.5], got {self.contamination!r}.")
        if self._precomputed and not self.feature_shapes:
            raise ValueError("extractor='precomputed' needs feature_shapes, the feature step's feature_shapes_.")
        if self.augmentation != "auto":
            symmetries(self.augmentation, (1, 1))
            if self._precomputed and self.augmentation != "none":
                raise ValueError("extractor='precomputed' takes rows of features, which cannot be turned or "
                                 "flipped: use augmentation='none'.")
        if self.nfa_null not in ("empirical", "theory"):
            raise ValueError(f"nfa_null must be 'empirical' or 'theory', got {self.nfa_null!r}.")
        if self.nfa_null == "empirical" and not self.validation_fraction:
            raise ValueError("nfa_null='empirical' needs held-out images: set validation_fraction > 0, "
                             "or use nfa_null='theory'.")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}.")
        for name in ("max_epochs", "batch_size", "n_flow_steps", "n_iter_no_change"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Integral) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not (isinstance(self.positional_encoding, numbers.Integral) and self.positional_encoding >= 0):
            raise ValueError(f"positional_encoding must be a non-negative integer, got {self.positional_encoding!r}.")
        smoothing = self.map_smoothing
        if not (smoothing == "auto" if isinstance(smoothing, str) else
                isinstance(smoothing, numbers.Real) and smoothing >= 0):
            raise ValueError(f"map_smoothing must be 'auto' or a non-negative number, got {self.map_smoothing!r}.")
        for name in ("learning_rate", "affine_clamp"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
        for name in ("weight_decay", "feature_noise", "tol"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}.")

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
                       weight_decay=self.weight_decay, feature_noise=self.feature_noise,
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
            scores = [self._score(self._latents_of([f[i : i + self._scoring_batch_size] for f in features]))
                      for features in (train_features, val_features) if features is not None
                      for i in range(0, len(features[0]), self._scoring_batch_size)]
            self.offset_ = float(np.percentile(np.concatenate(scores), 100.0 * self.contamination))
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
        for start in range(0, len(raw), self._scoring_batch_size):
            results = compute(self._latents_of(self._features(raw[start : start + self._scoring_batch_size])))
            results = results if several else (results,)
            if outs is None:
                outs = [np.empty((len(raw), *np.shape(r)[1:]), dtype=t)
                        for r, t in zip(results, dtype if several else (dtype,))]
            for out, result in zip(outs, results):
                out[start : start + len(result)] = result
        return tuple(outs) if several else outs[0]

    @property
    def _scoring_batch_size(self):
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
        sizes = np.cumsum([0] + [int(np.prod(s)) for s in self.latent_shapes_])
        rows = self._batched(X, lambda z: torch.cat([t.flatten(1).cpu() for t in z], 1).numpy(), np.float32)
        return [torch.from_numpy(rows[:, a:b]).reshape(-1, *s)
                for a, b, s in zip(sizes[:-1], sizes[1:], self.latent_shapes_)]

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

    def _maps_and_log_nfa(self, X):
        """:meth:`anomaly_maps` and :meth:`log_nfa_maps` from one pass of
        the backbone and the flow."""
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
