import numpy as np
import pytest
import scipy.fft
import torch

import FrEIA.modules as Fm

from flow_helpers import TINY, inputs, randomise
from sklearn_uflow.flow import FlowStep, build_uflow, latent_shapes, position_cosines

# (image_context, positional_encoding): the paper's couplings, and each way of conditioning them
CONDITIONS = [(True, 0), (False, 0), (True, 2), (False, 1)]


def test_latent_shapes_split_half_and_upsample():
    assert latent_shapes([(24, 64, 64), (40, 32, 32), (112, 16, 16)]) == [(30, 64, 64), (30, 32, 32), (56, 16, 16)]
    assert latent_shapes([(768, 28, 28), (384, 14, 14)]) == [(816, 28, 28), (192, 14, 14)]
    # the flow is dimension-preserving
    shapes = [(24, 64, 64), (40, 32, 32), (112, 16, 16)]
    assert sum(np.prod(s) for s in latent_shapes(shapes)) == sum(np.prod(s) for s in shapes)


@pytest.mark.parametrize("image_context, positional_encoding", CONDITIONS)
def test_flow_is_invertible(image_context, positional_encoding):
    flow = randomise(build_uflow(TINY, n_steps=2, image_context=image_context,
                                  positional_encoding=positional_encoding).double())
    x = inputs(TINY)
    flow.standardize_with(x)
    z, log_det = flow(x)
    assert [tuple(t.shape[1:]) for t in z] == latent_shapes(TINY)
    x_back, log_det_back = flow(z, rev=True, context=flow.context(x) if image_context else None)
    for a, b in zip(x, x_back):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(log_det_back, -log_det, rtol=1e-9, atol=1e-9)
    if image_context:
        with pytest.raises(ValueError, match="context="):
            flow(z, rev=True)


@pytest.mark.parametrize("image_context, positional_encoding", CONDITIONS)
def test_flow_steps_compute_freias_all_in_one_block(image_context, positional_encoding):
    flow = randomise(build_uflow(TINY, n_steps=2, image_context=image_context,
                                  positional_encoding=positional_encoding).double(), seed=4)
    x = inputs(TINY, seed=5)
    flow.standardize_with(x)
    steps = [m for m in flow.modules() if isinstance(m, FlowStep)]
    assert len(steps) == 2 * len(TINY)
    if image_context:  # the subnets read the images' context from the flow's slot
        flow.context_slot.value = flow.context(x)
    g = torch.Generator().manual_seed(6)
    for step, scale in zip(steps, [1, 1, 0, 0]):
        shape = (3, step.in_channels, *TINY[scale][1:])
        step_input = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()
        (ours,), log_det = step([step_input])
        (freias,), freias_log_det = Fm.AllInOneBlock.forward(step, [step_input])
        torch.testing.assert_close(ours, freias, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(log_det, freias_log_det, rtol=1e-12, atol=1e-12)
        # and the same gradients, for every trained parameter and the input
        trained = [step_input, *(p for p in step.parameters() if p.requires_grad)]
        weights = torch.randn(shape, generator=g, dtype=torch.float64)
        grads = torch.autograd.grad((ours * weights).sum() + log_det.sum(), trained)
        expected = torch.autograd.grad((freias * weights).sum() + freias_log_det.sum(), trained)
        for a, b in zip(grads, expected):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("image_context, positional_encoding", CONDITIONS)
def test_log_determinant_matches_brute_force_jacobian(image_context, positional_encoding):
    flow = randomise(build_uflow(TINY, n_steps=2, image_context=image_context,
                                  positional_encoding=positional_encoding).double(), seed=1)
    x = inputs(TINY, n=1, seed=2)
    flow.standardize_with(inputs(TINY, n=5, seed=3))
    sizes = [int(np.prod(s)) for s in TINY]
    # A conditional flow's log-determinant holds the condition fixed.
    context = flow.context(x) if image_context else None

    def flat(v):
        parts = torch.split(v, sizes)
        z, _ = flow([p.reshape(1, *s) for p, s in zip(parts, TINY)], context=context)
        return torch.cat([t.reshape(-1) for t in z])

    vector = torch.cat([t.reshape(-1) for t in x])
    jacobian = torch.autograd.functional.jacobian(flat, vector)
    _, expected = torch.linalg.slogdet(jacobian)
    _, log_det = flow(x)
    torch.testing.assert_close(log_det[0], expected, rtol=1e-8, atol=1e-8)


def test_image_context_enters_only_through_its_linear_maps():
    with_context = randomise(build_uflow(TINY, n_steps=2, positional_encoding=0).double(), seed=4)
    x = inputs(TINY, n=4, seed=5)
    with_context.standardize_with(x)
    state = with_context.state_dict()
    paper = build_uflow(TINY, n_steps=2, image_context=False, positional_encoding=0).double()
    # The same weights, less the context maps, load into the paper's flow.
    paper.load_state_dict({k.replace(".first.", ".0.").replace(".last.", ".2."): v
                           for k, v in state.items() if not k.endswith("context.weight")})
    z_paper, log_det_paper = paper(x)
    z, log_det = with_context(x)
    # The context changes the latents ...
    assert not torch.allclose(z[0], z_paper[0])
    # ... and only through the linear maps: zeroed, the two flows agree.
    with torch.no_grad():
        for name, p in with_context.named_parameters():
            if name.endswith("context.weight"):
                p.zero_()
    z, log_det = with_context(x)
    for a, b in zip(z, z_paper):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(log_det, log_det_paper)


def test_position_cosines_are_the_dct_basis():
    height, width = 5, 3
    maps = position_cosines(height, width, 2).double()
    assert maps.shape == (1, 4, height, width)
    # The DCT-II basis vectors, from scipy: the orthonormal DCT of the identity's columns, unscaled.
    rows = scipy.fft.dct(np.eye(height), type=2, axis=0, norm="ortho") * np.sqrt(height / 2)
    cols = scipy.fft.dct(np.eye(width), type=2, axis=0, norm="ortho") * np.sqrt(width / 2)
    for k in (1, 2):
        np.testing.assert_allclose(maps[0, k - 1].numpy(), np.repeat(rows[k][:, None], width, 1), atol=1e-6)
        np.testing.assert_allclose(maps[0, 1 + k].numpy(), np.repeat(cols[k][None, :], height, 0), atol=1e-6)
    # a known case: two rows, k = 1
    np.testing.assert_allclose(position_cosines(2, 1, 1)[0, 0, :, 0].numpy(), [0.5 ** 0.5, -(0.5 ** 0.5)], atol=1e-7)


def test_positions_enter_only_through_their_maps():
    positioned = randomise(build_uflow(TINY, n_steps=2, positional_encoding=2).double(), seed=4)
    x = inputs(TINY, n=4, seed=5)
    positioned.standardize_with(x)
    plain = build_uflow(TINY, n_steps=2, positional_encoding=0).double()
    # The same weights, less the positional maps, load into the flow without positions.
    plain.load_state_dict({k: v for k, v in positioned.state_dict().items() if not k.endswith("position.weight")})
    z_plain, log_det_plain = plain(x)
    z, log_det = positioned(x)
    assert not torch.allclose(z[0], z_plain[0])
    with torch.no_grad():
        for name, p in positioned.named_parameters():
            if name.endswith("position.weight"):
                p.zero_()
    z, log_det = positioned(x)
    for a, b in zip(z, z_plain):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(log_det, log_det_plain)


def test_image_context_is_each_images_own_across_threads():
    from concurrent.futures import ThreadPoolExecutor

    flow = randomise(build_uflow(TINY, n_steps=2).double(), seed=6)
    batches = [inputs(TINY, n=2, seed=s) for s in range(8)]
    flow.standardize_with(batches[0])
    with torch.no_grad():
        expected = [flow(b)[0] for b in batches]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda b: flow(b)[0], batches * 4))
    for i, z in enumerate(got):
        for a, b in zip(z, expected[i % len(batches)]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_seed_fixes_the_model():
    a, b, c = (build_uflow(TINY, seed=s).state_dict() for s in (7, 7, 8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_incompatible_shapes_are_refused():
    with pytest.raises(ValueError, match="twice the height"):
        build_uflow([(4, 8, 8), (8, 3, 3)])
