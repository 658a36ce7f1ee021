"""Phase 2 of U-Flow, training: maximum likelihood, judged on images the flow did not see.

The loss per image is ``0.5 * ||z||^2 - log|det J|``, averaged over the
batch; AdamW with a warm-up then cosine schedule. Every decision that needs
images the flow was not trained on (when to stop, whether to learn from
turned copies) reads held-out images: :func:`fit_held_out` trains one flow
per split of the training images, either one split or the K folds of
cross-fitting, side by side, and stops them together when their *pooled*
held-out loss stops improving, so that with K folds every training image
takes part in every decision. Whether to learn from flipped and turned
copies is such a decision: the folds are trained with and without them, and
:func:`lower_held_out_loss` keeps what makes the held-out images, as they
are, more likely. With cross-fitting, :func:`fit_every_image` then trains
the flow to keep on every image, for the epochs the folds chose. The steps
are :meth:`UFlowDetector.fit <sklearn_uflow.UFlowDetector.fit>`'s.
"""

import copy
import math
import time
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["FinalFit", "FlowTraining", "HeldOutFit", "TrainingDivergedError", "bits_per_dim", "copy_rows",
           "fit_every_image", "fit_held_out", "lower_held_out_loss", "negative_log_likelihood", "per_image_nll"]


class TrainingDivergedError(FloatingPointError):
    """The flow's loss became NaN or infinite during training.

    Raised rather than returning a flow whose latents are not numbers; a
    lower ``learning_rate`` or ``affine_clamp`` usually avoids it.

    See Also
    --------
    FlowTraining : Raises it.

    Examples
    --------
    >>> from sklearn_uflow.training import TrainingDivergedError
    >>> issubclass(TrainingDivergedError, FloatingPointError)
    True"""


def negative_log_likelihood(latents, log_det):
    """Compute each image's negative log-likelihood, ``0.5 * ||z||^2 - log|det J|``.

    The constant is left out (see :func:`bits_per_dim`).

    Parameters
    ----------
    latents : list of torch.Tensor of shape (n, C, H, W)
        The flow's latents, one tensor per scale.
    log_det : torch.Tensor of shape (n,)
        The flow's ``log|det J|``.

    Returns
    -------
    nll : torch.Tensor of shape (n,)
        One loss per image.

    See Also
    --------
    bits_per_dim : The same per dimension, in bits.

    Examples
    --------
    >>> import torch
    >>> from sklearn_uflow.training import negative_log_likelihood
    >>> negative_log_likelihood([torch.ones(1, 2, 2, 2)], torch.tensor([1.0]))  # 8 / 2 - 1
    tensor([3.])
    """
    squared = sum(z.pow(2).sum(dim=tuple(range(1, z.ndim))) for z in latents)  # flatten would copy a channels-last z
    return 0.5 * squared - log_det


def bits_per_dim(nll, n_dims):
    """Convert a negative log-likelihood per image to bits per dimension.

    The loss in a unit that does not depend on the features' size, so that
    losses of different backbones and image sizes can be compared.

    Parameters
    ----------
    nll : float or ndarray
        :func:`negative_log_likelihood` of an image, or a mean of them.
    n_dims : int
        Dimensions per image (features of every scale).

    Returns
    -------
    bpd : float or ndarray
        The loss per dimension with the Gaussian's constant put back, in bits.

    See Also
    --------
    negative_log_likelihood : The loss it converts.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.training import bits_per_dim
    >>> round(float(bits_per_dim(0.0, 1)), 4)  # the Gaussian's constant alone: log2(2 pi) / 2
    1.3257
    """
    return (nll / n_dims + 0.5 * math.log(2 * math.pi)) / math.log(2)


def _n_dims(features):
    return sum(int(np.prod(f.shape[1:])) for f in features)


def per_image_nll(flow, features, index, batch_size, device):
    """Negative log-likelihood of each of ``features[index]`` under ``flow``.

    Batch by batch and without gradients, so that held-out images of any
    number are scored in bounded memory.

    Parameters
    ----------
    flow : UFlow
        The flow, set to evaluation mode.
    features : list of torch.Tensor of shape (n, C, H, W)
        Per-scale features.
    index : array-like of int
        The rows to evaluate.
    batch_size : int
        Rows per forward pass.
    device : torch.device
        Where the flow runs.

    Returns
    -------
    nll : ndarray of shape (len(index),), float64
        :func:`negative_log_likelihood` of each row.

    See Also
    --------
    negative_log_likelihood : The loss of one batch.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_uflow.flow import build_uflow
    >>> from sklearn_uflow.training import per_image_nll
    >>> features = [torch.randn(5, 8, 4, 4), torch.randn(5, 16, 2, 2)]
    >>> flow = build_uflow([(8, 4, 4), (16, 2, 2)], n_steps=1).eval()
    >>> per_image_nll(flow, features, np.arange(5), batch_size=2, device=torch.device("cpu")).shape
    (5,)
    """
    flow.eval()
    index = torch.as_tensor(np.asarray(index, dtype=np.int64))
    out = []
    with torch.inference_mode():
        for batch in index.split(batch_size):
            latents, log_det = flow([f[batch].to(device) for f in features])
            out.append(negative_log_likelihood(latents, log_det).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _decay_groups(flow, weight_decay):
    """AdamW's parameter groups: weight decay on the couplings' weights only.

    Decoupled (AdamW), not an L2 term added to the gradient: the loss sums over
    some 10^5 dimensions per image, so its gradients are hundreds of times the
    weights and an added L2 term would do nothing at any usual value. Decay
    pulls a coupling towards the identity and its context term towards the
    paper's subnet; the biases and the global affine, whose zero is no such
    reference, are left alone.
    """
    decayed, kept = [], []
    for name, p in flow.named_parameters():
        if p.requires_grad:
            (decayed if ".subnet." in name and name.endswith(".weight") else kept).append(p)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": kept, "weight_decay": 0.0}]


def copy_rows(index, n_rows, n_copies):
    """Find the rows of every copy of some images in copy-major features.

    Features of images and their copies are stored copy-major, one block of
    ``n_rows`` rows per copy; this gives the rows of the copies of a split's
    images.

    Parameters
    ----------
    index : array-like of int
        The images, in ``range(n_rows)``.
    n_rows : int
        Images per copy in the features.
    n_copies : int
        Copies per image.

    Returns
    -------
    rows : ndarray of int64 of shape (n_copies * len(index),)
        Copy ``k`` of image ``i`` is at row ``k * n_rows + i``; copy after
        copy.

    See Also
    --------
    FlowTraining : Trains on rows found this way.

    Examples
    --------
    >>> from sklearn_uflow.training import copy_rows
    >>> copy_rows([0, 2], n_rows=3, n_copies=2)
    array([0, 2, 3, 5])
    """
    index = np.asarray(index, dtype=np.int64)
    return (index[None, :] + n_rows * np.arange(n_copies)[:, None]).ravel()


class FlowTraining:
    """Maximum-likelihood fit of one flow, one epoch at a time.

    An epoch is one pass, in random order, over the training images; with
    ``n_copies > 1`` each image comes as one of its copies (the identity
    included) drawn at random, so that copies add variety at no cost in
    steps: an epoch with copies costs what one without does. The loss is the
    per-image negative log-likelihood averaged over the batch, so that the
    learning rate does not depend on the batch size.
    AdamW (weight decay on the couplings' weights only), with a warm-up then
    cosine learning-rate schedule over ``max_epochs``, stepped once per
    iteration; a caller may stop earlier (:func:`fit_held_out` does, on the
    held-out loss), and a flow trained for the same number of epochs on
    other images follows the same schedule.

    Parameters
    ----------
    flow : UFlow
        The flow; its standardisation is set here from the training rows.
    features : list of torch.Tensor of shape (n_copies * n_rows, C, H, W)
        Per-scale features, copy ``k`` of image ``i`` at row ``k * n_rows + i``.
    train_index : array-like of int
        The training images, in ``range(n_rows)``.
    n_rows : int
        Images per copy in ``features``.
    n_copies : int, default=1
        Copies of each image in ``features`` to train on.
    max_epochs, batch_size, learning_rate, weight_decay : number
        The schedule's length in epochs, the images per step, AdamW's peak
        learning rate and the couplings' weight decay.
    device : torch.device
        Where the flow trains.
    seed : int
        Seeds the batch order.

    See Also
    --------
    fit_held_out : Several trainings, stopped on their held-out loss.
    fit_every_image : One training for a set number of epochs.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_uflow.flow import build_uflow
    >>> from sklearn_uflow.training import FlowTraining
    >>> features = [torch.randn(8, 8, 4, 4), torch.randn(8, 16, 2, 2)]
    >>> training = FlowTraining(build_uflow([(8, 4, 4), (16, 2, 2)], n_steps=1), features, np.arange(8), n_rows=8,
    ...                         max_epochs=2, batch_size=4, learning_rate=1e-3, weight_decay=0.0,
    ...                         device=torch.device("cpu"), seed=0)
    >>> losses = [training.run_epoch() for _ in range(2)]
    >>> len(losses)
    2
    """

    def __init__(self, flow, features, train_index, *, n_rows, n_copies=1, max_epochs, batch_size, learning_rate,
                 weight_decay, device, seed):
        self.flow, self.features, self.device = flow, features, device
        self.images = torch.as_tensor(np.asarray(train_index, dtype=np.int64))
        self.n_rows, self.n_copies = n_rows, n_copies
        self.batch_size, self.learning_rate = batch_size, learning_rate
        self.n_dims = _n_dims(features)
        flow.standardize_with(features, torch.as_tensor(copy_rows(train_index, n_rows, n_copies)))
        flow.to(device)
        total = max_epochs * math.ceil(len(self.images) / batch_size)
        warmup = max(1, total // 20)
        # The fused kernel does one pass over all the weights, not a loop over tensors.
        fused = torch.device(device).type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(_decay_groups(flow, weight_decay), lr=learning_rate, fused=fused)
        # One LambdaLR: the minimum of the warm-up ramp and the cosine, which SequentialLR's hand-over from
        # one scheduler to the next does not give.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda it: min((it + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(it, total) / total))),
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0

    def run_epoch(self):
        """Train one epoch.

        Returns
        -------
        train_bpd : float
            The epoch's mean training loss, in bits per dimension.
        """
        flow = self.flow
        flow.train()
        running = 0.0
        rows = self.images
        if self.n_copies > 1:
            rows = rows + self.n_rows * torch.randint(self.n_copies, (len(rows),), generator=self.generator)
        order = rows[torch.randperm(len(rows), generator=self.generator)]
        for batch in order.split(self.batch_size):
            latents, log_det = flow([f[batch].to(self.device) for f in self.features])
            loss = negative_log_likelihood(latents, log_det).mean()
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"the flow's loss became {loss.item()} at epoch {self.epoch + 1}; training diverged. "
                    f"Lower learning_rate (now {self.learning_rate:g}) or check the input images."
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            running += loss.item() * len(batch)
        self.epoch += 1
        flow.eval()
        return bits_per_dim(running / len(rows), self.n_dims)


class HeldOutFit(NamedTuple):
    """What :func:`fit_held_out` returns.

    The folds' flows judge the images they did not train on: their latents
    fit the NFA's null law, and their pooled curve chooses the epochs of the
    final flow and the augmentation.

    Parameters
    ----------
    flows : list of UFlow
        One flow per split, with the weights of the best epoch.
    history : dict
        ``train_bpd`` (the mean over the splits) and the pooled ``val_bpd``
        per epoch, ``best_epoch`` and ``seconds``.

    See Also
    --------
    fit_held_out : Returns it.
    lower_held_out_loss : Compares two of them.

    Examples
    --------
    >>> from sklearn_uflow.training import HeldOutFit
    >>> fit = HeldOutFit(flows=[], history={"val_bpd": [3.0, 2.8, 2.9], "best_epoch": 2})
    >>> fit.history["best_epoch"]
    2
    """

    flows: list
    history: dict


def fit_held_out(build_flow, features, splits, *, n_copies=1, max_epochs, n_iter_no_change, tol, progress=None,
                 stage="", **options):
    """Train one flow per split side by side, stopping them together on their pooled held-out loss.

    After every epoch each flow scores the images its split holds out; the
    mean over all of them is the pooled held-out loss. Training stops when it
    has not improved by ``tol`` bits per dimension for ``n_iter_no_change``
    epochs, and every flow gets back its weights of the best epoch. With
    the K folds of cross-fitting the pooled loss reads every training image.
    Held-out images are scored as they are, never as copies.

    Parameters
    ----------
    build_flow : callable
        Returns a new flow, the same initial weights at every call.
    features : list of torch.Tensor of shape (n_copies * n, C, H, W)
        Per-scale features of the ``n`` training images and their copies,
        copy-major (see :class:`FlowTraining`).
    splits : list of (ndarray, ndarray)
        Training and held-out image indices of each split; an empty
        held-out set trains for ``max_epochs`` and keeps the last weights.
    n_copies : int, default=1
        Copies per image in ``features``.
    max_epochs, n_iter_no_change, tol : number
        The budget in epochs, and the early stopping's patience and
        threshold (bits per dimension).
    progress : tqdm.tqdm, default=None
        A bar to count the epochs on (reset to ``max_epochs``).
    stage : str, default=""
        What the bar's postfix calls this fit.
    **options
        ``batch_size``, ``learning_rate``, ``weight_decay``, ``device`` and
        ``seed`` of :class:`FlowTraining`.

    Returns
    -------
    fit : HeldOutFit
        The flows at the best epoch, and the losses.

    See Also
    --------
    fit_every_image : The final flow, on every image.
    lower_held_out_loss : Choose among fits of the same folds.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from functools import partial
    >>> from sklearn_uflow.flow import build_uflow
    >>> from sklearn_uflow.training import fit_every_image, fit_held_out
    >>> features = [torch.randn(8, 8, 4, 4), torch.randn(8, 16, 2, 2)]
    >>> build = partial(build_uflow, [(8, 4, 4), (16, 2, 2)], n_steps=1, seed=0)
    >>> options = dict(batch_size=4, learning_rate=1e-3, weight_decay=0.0, device=torch.device("cpu"), seed=0)
    >>> splits = [(np.arange(4, 8), np.arange(4)), (np.arange(4), np.arange(4, 8))]
    >>> folds = fit_held_out(build, features, splits, max_epochs=3, n_iter_no_change=2, tol=0.0, **options)
    >>> len(folds.flows), len(folds.history["val_bpd"]) <= 3
    (2, True)
    >>> final = fit_every_image(build, features, epochs=folds.history["best_epoch"], max_epochs=3, **options)
    >>> len(final.train_bpd) == folds.history["best_epoch"]
    True
    """
    n_rows = len(features[0]) // n_copies
    trainings = [FlowTraining(build_flow(), features, train, n_rows=n_rows, n_copies=n_copies,
                              max_epochs=max_epochs, **options) for train, _ in splits]
    n_held_out = sum(len(val) for _, val in splits)
    history = {"train_bpd": [], "val_bpd": [], "best_epoch": 0}
    best, stale, best_states = math.inf, 0, None
    if progress is not None:
        progress.reset(total=max_epochs)
        progress.set_postfix_str(stage)
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        history["train_bpd"].append(float(np.mean([training.run_epoch() for training in trainings])))
        if progress is not None:
            progress.update()
        if not n_held_out:
            history["best_epoch"] = epoch
            continue
        total = sum(per_image_nll(t.flow, features, val, options["batch_size"], options["device"]).sum()
                    for t, (_, val) in zip(trainings, splits))
        val_bpd = bits_per_dim(total / n_held_out, trainings[0].n_dims)
        if not math.isfinite(val_bpd):
            raise TrainingDivergedError(f"the held-out loss became {val_bpd} at epoch {epoch}; lower "
                                        f"learning_rate (now {options['learning_rate']:g}).")
        history["val_bpd"].append(val_bpd)
        if progress is not None:
            progress.set_postfix_str(f"{stage}, held-out {val_bpd:.4f} bits/dim")
        if val_bpd < best - tol:
            best, stale, history["best_epoch"] = val_bpd, 0, epoch
            best_states = [copy.deepcopy(t.flow.state_dict()) for t in trainings]
        else:
            stale += 1
            if stale >= n_iter_no_change:
                break
    if best_states is not None:
        for training, state in zip(trainings, best_states):
            training.flow.load_state_dict(state)
    history["seconds"] = time.perf_counter() - start
    return HeldOutFit([t.flow.eval() for t in trainings], history)


class FinalFit(NamedTuple):
    """What :func:`fit_every_image` returns.

    The flow that a cross-fitted detector keeps, and its training curve, which
    becomes the detector's ``loss_curve_``.

    Parameters
    ----------
    flow : UFlow
        The flow, trained on every image.
    train_bpd : list of float
        Its mean training loss per epoch, in bits per dimension.

    See Also
    --------
    fit_every_image : Returns it.
    HeldOutFit : What the folds return.

    Examples
    --------
    >>> from sklearn_uflow.training import FinalFit
    >>> FinalFit(flow=None, train_bpd=[3.2, 2.9]).train_bpd[-1]
    2.9
    """

    flow: object
    train_bpd: list


def fit_every_image(build_flow, features, *, n_copies=1, epochs, max_epochs, progress=None, stage="", **options):
    """Train one flow on every image, for a number of epochs chosen beforehand.

    The final step of cross-fitting: the folds chose the number of epochs
    (their best), and this flow trains on all the images for that many, on
    the schedule the folds followed (the same ``max_epochs``), so that it
    sees as much training as each of them did at its best.

    Parameters
    ----------
    build_flow : callable
        Returns a new flow.
    features : list of torch.Tensor of shape (n_copies * n, C, H, W)
        Per-scale features of the ``n`` images and their copies, copy-major
        (see :class:`FlowTraining`).
    n_copies : int, default=1
        Copies per image in ``features``.
    epochs : int
        Epochs to train for.
    max_epochs : int
        The schedule's length in epochs.
    progress : tqdm.tqdm, default=None
        A bar to count the epochs on (reset to ``epochs``).
    stage : str, default=""
        What the bar's postfix calls this fit.
    **options
        ``batch_size``, ``learning_rate``, ``weight_decay``, ``device`` and
        ``seed`` of :class:`FlowTraining`.

    Returns
    -------
    fit : FinalFit
        The flow and its training losses.

    See Also
    --------
    fit_held_out : The folds' training, which chooses ``epochs``.

    Examples
    --------
    >>> import torch
    >>> from functools import partial
    >>> from sklearn_uflow.flow import build_uflow
    >>> from sklearn_uflow.training import fit_every_image
    >>> build = partial(build_uflow, [(4, 4, 4), (8, 2, 2)], n_steps=1)
    >>> fit = fit_every_image(build, [torch.randn(6, 4, 4, 4), torch.randn(6, 8, 2, 2)], epochs=2, max_epochs=4,
    ...                       batch_size=3, learning_rate=1e-3, weight_decay=0.0, device=torch.device("cpu"), seed=0)
    >>> len(fit.train_bpd)
    2
    """
    n_rows = len(features[0]) // n_copies
    if progress is not None:
        progress.reset(total=epochs)
        progress.set_postfix_str(stage)
    training = FlowTraining(build_flow(), features, np.arange(n_rows), n_rows=n_rows, n_copies=n_copies,
                            max_epochs=max_epochs, **options)
    train_bpd = []
    for _ in range(epochs):
        train_bpd.append(training.run_epoch())
        if progress is not None:
            progress.update()
    return FinalFit(training.flow, train_bpd)


def lower_held_out_loss(fits):
    """Choose, among fits of the same folds, the one whose held-out images are the more likely.

    The held-out images are scored as they are, never as copies, so fits that
    learnt from different copies are judged on the same images: the one
    under which they are the more likely is the better model of normality.

    Parameters
    ----------
    fits : dict of str to HeldOutFit
        Fits of the same splits (e.g. by the copies they learnt from), in
        order of preference: a tie keeps the first.

    Returns
    -------
    chosen : str
        The key of the fit with the lowest pooled held-out loss at its best
        epoch.
    losses : dict of str to float
        Each fit's lowest pooled held-out loss, in bits per dimension.

    See Also
    --------
    fit_held_out : The fits it compares.

    Examples
    --------
    >>> from sklearn_uflow.training import HeldOutFit, lower_held_out_loss
    >>> fits = {"none": HeldOutFit([], {"val_bpd": [3.0, 2.5]}), "eight": HeldOutFit([], {"val_bpd": [2.9, 2.4]})}
    >>> lower_held_out_loss(fits)
    ('eight', {'none': 2.5, 'eight': 2.4})
    """
    losses = {key: min(fit.history["val_bpd"]) for key, fit in fits.items()}
    return min(losses, key=losses.get), losses
