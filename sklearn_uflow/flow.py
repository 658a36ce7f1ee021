"""Phase 2 of U-Flow: the U-shaped normalizing flow.

The flow maps the multi-scale features to latents that are i.i.d. N(0, 1)
under normality. It runs coarse to fine: each scale has a stage of Glow-like
steps (FrEIA's ``AllInOneBlock``, see :class:`FlowStep`: affine coupling with
soft clamping, a fixed permutation, a global affine scaling); after every
stage but the finest, half of the channels leave as that scale's latent and
the other half are upsampled by an invertible pixel shuffle (i-RevNet) and
concatenated to the next finer scale's features. It is one invertible graph
with one log-determinant.

Two inputs the paper's couplings do not have, each entering the subnet's
hidden layer through a map that starts at zero: the image's *context* (its
scale's standardised features averaged over the image), so that a region
normal in other images but not in this one can be flagged, and the
position's cosines (:func:`position_cosines`), since what is normal may
depend on where it is. Both are fixed inputs, so the flow is a density of the
features given them and the log-determinant does not change. Training is in
:mod:`~sklearn_uflow.training`.
"""

import math
import threading

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import numpy as np
import torch
from torch import nn

from ._torch_utils import torch_seed

__all__ = ["FlowStep", "UFlow", "build_uflow", "latent_shapes", "load_uflow", "position_cosines"]


class _ContextSlot(threading.local):
    """Where a flow puts the context of the images it is running on, for its
    coupling subnets to read. FrEIA's own condition inputs would concatenate a
    constant map to every coupling's input at every step. Thread-local, so
    that threads sharing a fitted flow do not mix their images; it pickles
    and copies empty."""

    value = None

    def __reduce__(self):
        return type(self), ()


class CouplingSubnet:
    """Constructor of the coupling subnetwork: conv - ReLU - conv.

    The hidden width equals the input channels (as in the paper). The last
    convolution starts at zero, so every coupling starts as the identity and
    early training is stable (as in Glow). With a context ``(slot, scale,
    channels)``, a linear map of the image's context at that scale is added to
    the hidden layer; with ``positions`` (a ``(1, P, H, W)`` map, see
    :func:`position_cosines`), a 1x1 convolution of it. A class, not a
    closure, so that fitted models pickle.
    """

    def __init__(self, kernel_size, context=None, positions=None):
        self.kernel_size = kernel_size
        self.context = context
        self.positions = positions

    def __call__(self, in_channels, out_channels):
        padding = self.kernel_size // 2
        first = nn.Conv2d(in_channels, in_channels, self.kernel_size, padding=padding)
        last = nn.Conv2d(in_channels, out_channels, self.kernel_size, padding=padding)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        if self.context is None and self.positions is None:
            return nn.Sequential(first, nn.ReLU(), last)
        return _ConditionedSubnet(first, last, self.context, self.positions)


class _ConditionedSubnet(nn.Module):
    """conv - ReLU - conv whose hidden layer also gets the image's context and
    the position's cosines, each through a map that starts at zero: the
    subnet starts as the paper's."""

    def __init__(self, first, last, context=None, positions=None):
        super().__init__()
        self.first, self.last = first, last
        self.context = self.position = None
        if context is not None:
            self.slot, self.scale, context_channels = context
            self.context = nn.Linear(context_channels, first.out_channels, bias=False)
            nn.init.zeros_(self.context.weight)
        if positions is not None:
            # Built on the meta device, so that it draws nothing from the seeded
            # generator and the other weights are those of a flow without it.
            self.position = nn.Conv2d(positions.shape[1], first.out_channels, 1, bias=False,
                                      device="meta").to_empty(device=positions.device)
            nn.init.zeros_(self.position.weight)
            # Made again from the shapes when a flow is built: not saved.
            self.register_buffer("cosines", positions, persistent=False)

    def forward(self, x):
        hidden = self.first(x)
        if self.context is not None:
            hidden = hidden + self.context(self.slot.value[self.scale])[:, :, None, None]
        if self.position is not None:
            hidden = hidden + self.position(self.cosines)
        return self.last(torch.relu(hidden))


def position_cosines(height, width, n_frequencies):
    """The positions of a grid as cosines of its rows and of its columns.

    The DCT-II basis: ``cos(pi * k * (i + 1/2) / height)`` for ``k`` from 1
    to ``n_frequencies``, then the same for the columns. The lowest
    frequency tells top from bottom, the next the edges from the middle;
    every value is in [-1, 1] whatever the grid's size.

    Parameters
    ----------
    height, width : int
        The grid's size.
    n_frequencies : int
        Cosines per axis.

    Returns
    -------
    cosines : torch.Tensor of shape (1, 2 * n_frequencies, height, width)
        The rows' cosines, then the columns'.

    See Also
    --------
    build_uflow : Its couplings see these, with ``positional_encoding``.

    Examples
    --------
    >>> from sklearn_uflow.flow import position_cosines
    >>> position_cosines(2, 3, 1)[0, 0]  # the rows' lowest frequency
    tensor([[ 0.7071,  0.7071,  0.7071],
            [-0.7071, -0.7071, -0.7071]])
    """
    rows = (torch.arange(height) + 0.5) / height
    cols = (torch.arange(width) + 0.5) / width
    ks = range(1, n_frequencies + 1)
    maps = [torch.cos(math.pi * k * rows)[:, None].expand(height, width) for k in ks]
    maps += [torch.cos(math.pi * k * cols)[None, :].expand(height, width) for k in ks]
    maps = torch.stack(maps)
    return maps[None].contiguous()


class FlowStep(Fm.AllInOneBlock):
    """One Glow-like step: FrEIA's ``AllInOneBlock`` with a leaner forward pass.

    Affine coupling, global affine and fixed permutation, with the same
    parameters and the same function as FrEIA's block, and a forward pass
    that makes fewer passes over the data: the global affine is folded into
    the permutation's 1x1 convolution (weight columns scaled, offset as its
    bias), and the subnet's output is split rather than sliced, whose
    backward pass would zero-fill and copy a full-size gradient twice. The
    inverse, and configurations other than ``build_uflow``'s, run FrEIA's
    own code.

    Parameters
    ----------
    dims_in : list of tuple of int
        The input's shape, ``[(C, H, W)]``.
    dims_c : list, default=[]
        Shapes of FrEIA's condition inputs (not used by ``build_uflow``).
    subnet_constructor : callable, default=None
        ``subnet_constructor(in_channels, out_channels)`` builds the
        coupling's subnet (:class:`CouplingSubnet`).
    affine_clamping : float, default=2.0
        Soft bound of the log-scales.
    gin_block : bool, default=False
        Volume-preserving (GIN) coupling.
    global_affine_init : float, default=1.0
        Initial global scale.
    global_affine_type : str, default="SOFTPLUS"
        Activation of the global scale.
    permute_soft : bool, default=False
        A random rotation instead of a permutation.
    learned_householder_permutation : int, default=0
        Learned Householder reflections.
    reverse_permutation : bool, default=False
        Permute before the coupling rather than after.

    See Also
    --------
    build_uflow : The flow built of these steps.
    FrEIA.modules.AllInOneBlock : The block it reproduces.

    Examples
    --------
    >>> import torch
    >>> from sklearn_uflow.flow import CouplingSubnet, FlowStep
    >>> step = FlowStep([(4, 8, 8)], subnet_constructor=CouplingSubnet(3))
    >>> (y,), log_det = step([torch.randn(2, 4, 8, 8)])
    >>> tuple(y.shape), tuple(log_det.shape)
    ((2, 4, 8, 8), (2,))
    """

    def forward(self, x, c=[], rev=False, jac=True):  # noqa: B006 (FrEIA's signature)
        """Map the input through the step, as FrEIA's ``AllInOneBlock.forward``.

        Parameters
        ----------
        x : tuple of torch.Tensor
            ``(x,)``, the input of shape ``(n, C, H, W)``.
        c : list, default=[]
            Condition inputs (FrEIA's code runs when given).
        rev : bool, default=False
            Invert the step (FrEIA's code).
        jac : bool, default=True
            Kept for FrEIA's signature; the log-determinant is always given.

        Returns
        -------
        outputs : tuple of torch.Tensor
            ``(y,)``.
        log_det : torch.Tensor of shape (n,)
            ``log|det J|`` of each sample.
        """
        if rev or c or self.GIN or self.householder or self.reverse_pre_permute:
            return super().forward(x, c, rev=rev, jac=jac)
        passive, active = torch.split(x[0], self.splits, dim=1)
        raw_log_scale, raw_shift = torch.split(self.subnet(passive), self.splits[1], dim=1)
        # FrEIA scales the subnet's output by 0.1 before the soft clamp
        log_scale = self.clamp * torch.tanh(0.1 * raw_log_scale)
        active = torch.addcmul(0.1 * raw_shift, active, torch.exp(log_scale))
        global_scale = self.global_scale_activation(self.global_scale)
        weight = self.w_perm * global_scale.view(1, -1, *([1] * self.input_rank))
        bias = self.w_perm.flatten(1) @ self.global_offset.flatten()
        out = self.permute_function(torch.cat((passive, active), 1), weight, bias)
        n_pixels = out[0, :1].numel()
        log_jac_det = log_scale.sum(dim=self.sum_dims) + n_pixels * torch.log(global_scale).sum()
        return (out,), log_jac_det


def _channels_up(channels):
    """Channels sent up to the finer scale: half, rounded down to a multiple of 4
    since the pixel shuffle turns 4 channels into 1 at twice the resolution."""
    return channels // 8 * 4


def latent_shapes(feature_shapes):
    """Compute the latents' shapes for given feature shapes.

    Every stage but the finest keeps half of its channels as its latent and
    sends the other half up, pixel-shuffled to a quarter as many channels at
    twice the resolution; the finest stage, its features and what came up,
    is its latent whole.

    Parameters
    ----------
    feature_shapes : list of (C, H, W)
        The feature maps' shapes, finest first.

    Returns
    -------
    shapes : list of (C, H, W)
        The latents' shapes, finest first: the channels left at each scale
        once half of every coarser stage has been sent up.

    See Also
    --------
    build_uflow : The flow whose latents these are.

    Examples
    --------
    >>> from sklearn_uflow.flow import latent_shapes
    >>> latent_shapes([(8, 4, 4), (16, 2, 2)])
    [(10, 4, 4), (8, 2, 2)]
    """
    shapes = [None] * len(feature_shapes)
    carried = 0
    for s in reversed(range(len(feature_shapes))):
        channels, height, width = feature_shapes[s]
        channels += carried
        carried = _channels_up(channels) // 4 if s > 0 else 0
        shapes[s] = (channels - 4 * carried, height, width)
    return shapes


def _check_shapes(feature_shapes):
    for s, (_, height, width) in enumerate(feature_shapes):
        if s + 1 < len(feature_shapes):
            coarser = feature_shapes[s + 1]
            if (2 * coarser[1], 2 * coarser[2]) != (height, width):
                raise ValueError(
                    f"each scale must have twice the height and width of the next coarser one; got "
                    f"{height}x{width} and {coarser[1]}x{coarser[2]} (for CNN backbones, use an "
                    "input_size that is a multiple of 16)."
                )
    channels = latent_shapes(feature_shapes)
    if any(c < 2 for c, _, _ in channels) or any(_channels_up(c + 0) == 0 for c, _, _ in feature_shapes[1:]):
        raise ValueError(f"feature maps {feature_shapes} have too few channels for the flow.")


def build_uflow(feature_shapes, *, n_steps=4, clamp=2.0, image_context=True, positional_encoding=4, seed=0):
    """Build the U-shaped flow for the given feature shapes.

    Coarse to fine: each stage's steps run at its scale, half of its channels
    leave as that scale's latent, and the other half is pixel-shuffled into
    the next finer scale, where it joins that scale's features. One graph,
    one log-determinant.

    Parameters
    ----------
    feature_shapes : list of (C, H, W)
        Shapes of the feature maps, finest first; each scale must have twice
        the resolution of the next coarser one.
    n_steps : int, default=4
        Flow steps per scale. Kernels alternate 3x3 (even steps) and 1x1.
    clamp : float, default=2.0
        Soft clamping of the log-scales, ``clamp * tanh(s)``.
    image_context : bool, default=True
        Whether the couplings see the image's mean standardized feature at
        their scale (see the module's docstring); False gives the paper's flow.
    positional_encoding : int, default=4
        Number of frequencies of the cosines of the row and of the column
        (:func:`position_cosines`) that the couplings see; 0 gives the
        paper's couplings, which do not know where they are.
    seed : int, default=0
        Seeds the initial weights and the fixed channel permutations.

    Returns
    -------
    flow : UFlow
        Called as ``flow(list_of_feature_maps)``, it returns the latents
        (finest scale first) and the log-determinant per sample (see
        :meth:`UFlow.forward`). Set its input standardisation with
        ``flow.standardize_with(features)``.

    See Also
    --------
    latent_shapes : The shapes of its latents.
    load_uflow : Build it again from its options and weights.

    Examples
    --------
    >>> from sklearn_uflow.flow import build_uflow
    >>> flow = build_uflow([(8, 4, 4), (16, 2, 2)], n_steps=1, seed=0)
    >>> flow.build_options["feature_shapes"]
    [[8, 4, 4], [16, 2, 2]]
    """
    _check_shapes(feature_shapes)
    rng = np.random.default_rng(seed)
    slot = _ContextSlot() if image_context else None
    with torch_seed(seed):
        inputs = [Ff.InputNode(*shape, name=f"features_{s}") for s, shape in enumerate(feature_shapes)]
        nodes, outputs = [], [None] * len(feature_shapes)
        carry, upsampled = inputs[-1], None  # the coarsest scale has nothing from below
        for s in reversed(range(len(feature_shapes))):
            if upsampled is not None:
                carry = Ff.Node([inputs[s].out0, upsampled.out0], Fm.Concat, {"dim": 0}, name=f"concat_{s}")
                nodes.append(carry)
            context = (slot, s, feature_shapes[s][0]) if image_context else None
            positions = position_cosines(*feature_shapes[s][1:], positional_encoding) if positional_encoding else None
            for step in range(n_steps):
                carry = Ff.Node(
                    carry, FlowStep,
                    {"subnet_constructor": CouplingSubnet(3 if step % 2 == 0 else 1, context, positions),
                     "affine_clamping": clamp},
                    name=f"scale{s}_step{step}",
                )
                nodes.append(carry)
            if s == 0:
                outputs[s] = Ff.OutputNode(carry, name=f"latent_{s}")
                continue
            channels = carry.output_dims[0][0]
            sections = (channels - _channels_up(channels), _channels_up(channels))
            split = Ff.Node(carry, Fm.Split, {"section_sizes": sections, "dim": 0}, name=f"split_{s}")
            upsampled = Ff.Node(split.out1, Fm.IRevNetUpsampling, {}, name=f"upsample_{s}")
            outputs[s] = Ff.OutputNode(split.out0, name=f"latent_{s}")
            nodes += [split, upsampled]
        graph = Ff.GraphINN(inputs + nodes + outputs, verbose=False)
    # FrEIA draws its hard permutations from NumPy's global generator; redraw
    # them from ours so that a seed fixes the model.
    for module in graph.modules():
        if isinstance(module, FlowStep):
            channels = module.in_channels
            matrix = torch.zeros(channels, channels)
            matrix[torch.arange(channels), torch.as_tensor(rng.permutation(channels))] = 1.0
            module.w_perm.data.copy_(matrix.view_as(module.w_perm))
            module.w_perm_inv.data.copy_(matrix.T.reshape(module.w_perm_inv.shape))
    # Channels-last is oneDNN's native layout for the convolutions on the CPU;
    # the inputs are converted in forward.
    flow = UFlow(graph, feature_shapes, slot).to(memory_format=torch.channels_last)
    # What builds this graph again, for weights stored apart from it (pickles, model files): see load_uflow.
    flow.build_options = {"feature_shapes": [list(shape) for shape in feature_shapes], "n_steps": n_steps,
                          "clamp": clamp, "image_context": image_context, "positional_encoding": positional_encoding}
    return flow


def load_uflow(build_options, weights):
    """A flow built again from its ``build_options`` and given its weights.

    FrEIA's graphs hold lambdas, which do not pickle: a flow is stored as the
    options :func:`build_uflow` was called with (its ``build_options``, plain
    JSON values) and its ``state_dict``, the fixed permutations included.

    Parameters
    ----------
    build_options : dict
        A flow's ``build_options``.
    weights : dict of str to torch.Tensor
        Its ``state_dict()``.

    Returns
    -------
    flow : UFlow
        On the CPU, in evaluation mode.

    See Also
    --------
    build_uflow : Build a new flow.

    Examples
    --------
    >>> import torch
    >>> from sklearn_uflow.flow import build_uflow, load_uflow
    >>> flow = build_uflow([(8, 4, 4), (16, 2, 2)], n_steps=1, seed=3)
    >>> copy = load_uflow(flow.build_options, flow.state_dict())
    >>> x = [torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    >>> torch.equal(flow(x)[1], copy(x)[1])
    True
    """
    options = dict(build_options)
    options["feature_shapes"] = [tuple(int(v) for v in shape) for shape in options["feature_shapes"]]
    flow = build_uflow(**options)
    flow.load_state_dict(weights, strict=True)
    return flow.eval()


class UFlow(nn.Module):
    """The flow graph preceded by a fixed per-channel standardisation.

    The standardisation uses the training features' channel means and
    standard deviations: Glow's data-dependent ActNorm initialisation, kept
    fixed. Backbone features have scales far from 1, and without it most of
    the first epochs are spent learning them. Its log-determinant is part of
    the total, so the loss stays the features' negative log-likelihood.

    Parameters
    ----------
    graph : FrEIA.framework.GraphINN
        The U-shaped graph of :func:`build_uflow`.
    feature_shapes : list of (C, H, W)
        The feature maps' shapes, finest first.
    context_slot : object, default=None
        Where the couplings read the image's context, or None for a flow
        without it.

    See Also
    --------
    build_uflow : Build one.

    Examples
    --------
    >>> import torch
    >>> from sklearn_uflow.flow import build_uflow
    >>> flow = build_uflow([(8, 4, 4), (16, 2, 2)], n_steps=1)
    >>> latents, log_det = flow([torch.randn(3, 8, 4, 4), torch.randn(3, 16, 2, 2)])
    >>> [tuple(z.shape) for z in latents], tuple(log_det.shape)
    ([(3, 10, 4, 4), (3, 8, 2, 2)], (3,))
    """

    def __init__(self, graph, feature_shapes, context_slot=None):
        super().__init__()
        self.graph = graph
        self.context_slot = context_slot
        for s, (channels, _, _) in enumerate(feature_shapes):
            self.register_buffer(f"mean_{s}", torch.zeros(1, channels, 1, 1))
            self.register_buffer(f"log_std_{s}", torch.zeros(1, channels, 1, 1))
        self.n_scales = len(feature_shapes)

    @torch.no_grad()
    def standardize_with(self, features, rows=None):
        """Set the standardisation from per-scale training features.

        The moments are summed over chunks of rows in float64, in two
        passes, so that no copy of the features is made.

        Parameters
        ----------
        features : list of torch.Tensor of shape (n, C, H, W)
            Training features, one tensor per scale.
        rows : array-like of int, default=None
            The rows of ``features`` to use; default all.
        """
        for s, f in enumerate(features):
            index = torch.arange(len(f)) if rows is None else torch.as_tensor(rows)
            chunks = index.split(64)
            count = len(index) * f.shape[2] * f.shape[3]
            mean = sum(f[c].double().sum(dim=(0, 2, 3)) for c in chunks) / count
            centred = mean.view(1, -1, 1, 1)
            squares = sum((f[c].double() - centred).pow(2).sum(dim=(0, 2, 3)) for c in chunks)
            std = (squares / max(count - 1, 1)).sqrt().clamp_min(1e-6)
            getattr(self, f"mean_{s}").copy_(mean.view_as(getattr(self, f"mean_{s}")))
            getattr(self, f"log_std_{s}").copy_(std.log().view_as(centred))

    def _standardize(self, features):
        return [(f - getattr(self, f"mean_{s}")) * torch.exp(-getattr(self, f"log_std_{s}"))
                for s, f in enumerate(features)]

    def context(self, features):
        """Compute the images' context: each scale's standardised features, averaged.

        Parameters
        ----------
        features : list of torch.Tensor of shape (n, C, H, W)
            Feature maps, one tensor per scale.

        Returns
        -------
        context : list of torch.Tensor of shape (n, C)
            The average over each image, per scale.
        """
        return [x.mean(dim=(2, 3)) for x in self._standardize(features)]

    def forward(self, features, rev=False, context=None):
        """Map features to latents, or latents back to features.

        The log-determinant holds the context fixed.

        Parameters
        ----------
        features : list of torch.Tensor of shape (n, C, H, W)
            Feature maps (or, with ``rev=True``, latents), finest first.
        rev : bool, default=False
            Invert the flow.
        context : list of torch.Tensor, default=None
            The images' context; default :meth:`context` of the features.
            Inverting a flow with image context needs the context of the
            features it returns.

        Returns
        -------
        outputs : list of torch.Tensor
            The latents (or, with ``rev=True``, the features), finest first.
        log_det : torch.Tensor of shape (n,)
            ``log|det J|`` of each sample, in the direction run.
        """
        if rev and self.context_slot is not None and context is None:
            raise ValueError("inverting a flow with image context needs context=flow.context(features).")
        standardized = None if rev else self._standardize(features)
        if self.context_slot is not None:
            self.context_slot.value = context if context is not None else [x.mean(dim=(2, 3)) for x in standardized]
        try:
            if rev:
                outputs, log_det = self.graph(features, rev=True)
                outputs = [x * getattr(self, f"log_std_{s}").exp() + getattr(self, f"mean_{s}")
                           for s, x in enumerate(outputs)]
                return outputs, log_det + self._log_det_standardize(outputs)
            latents, log_det = self.graph([x.contiguous(memory_format=torch.channels_last) for x in standardized])
            return latents, log_det - self._log_det_standardize(features)
        finally:
            if self.context_slot is not None:
                self.context_slot.value = None  # holds no tensor, nor its autograd graph

    def _log_det_standardize(self, features):
        return sum(getattr(self, f"log_std_{s}").sum() * f.shape[2] * f.shape[3] for s, f in enumerate(features))
