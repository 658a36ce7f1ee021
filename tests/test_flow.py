import math

import numpy as np
import pytest
import scipy.fft
import torch

import FrEIA.modules as Fm

from sklearn_uflow.flow import (
    FlowStep, FlowTraining, TrainingDivergedError, _bits_per_dim, _noisy, build_uflow, evaluate_nll, latent_shapes,
    position_cosines, train_flow,
)

TINY = [(4, 4, 4), (8, 2, 2)]
# (image_context, positional_encoding): the paper's couplings, and each way of conditioning them
CONDITIONS = [(True, 0), (False, 0), (True, 2), (False, 1)]


def _inputs(shapes, n=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, *s, generator=g, dtype=dtype) for s in shapes]


def _randomise(flow, seed=0):
    """Random weights everywhere (the last convolutions start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            if p.requires_grad:
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


def test_latent_shapes_split_half_and_upsample():
    assert latent_shapes([(24, 64, 64), (40, 32, 32), (112, 16, 16)]) == [(30, 64, 64), (30, 32, 32), (56, 16, 16)]
    assert latent_shapes([(768, 28, 28), (384, 14, 14)]) == [(816, 28, 28), (192, 14, 14)]
    # the flow is dimension-preserving
    shapes = [(24, 64, 64), (40, 32, 32), (112, 16, 16)]
    assert sum(np.prod(s) for s in latent_shapes(shapes)) == sum(np.prod(s) for s in shapes)


@pytest.mark.parametrize("image_context, positional_encoding", CONDITIONS)
def test_flow_is_invertible(image_context, positional_encoding):
    flow = _randomise(build_uflow(TINY, n_steps=2, image_context=image_context,
                                  positional_encoding=positional_encoding).double())
    x = _inputs(TINY)
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
    flow = _randomise(build_uflow(TINY, n_steps=2, image_context=image_context,
                                  positional_encoding=positional_encoding).double(), seed=4)
    x = _inputs(TINY, seed=5)
    flow.standardize_with(x)
    steps = [m for m in flow.modules() if isinstance(m, FlowStep)]
    assert len(steps) == 2 * len(TINY)
    if image_context:  # the subnets read the images' context from the flow's slot
        flow.context_slot.value = flow.context(x)
    g = torch.Generator().manual_seed(6)
    for step, scale in zip(steps, [1, 1, 0, 0]):
        shape = (3, step.in_channels, *TINY[scale][1:])
        inputs = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()
        (ours,), log_det = step([inputs])
        (freias,), freias_log_det = Fm.AllInOneBlock.forward(step, [inputs])
        torch.testing.assert_close(ours, freias, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(log_det, freias_log_det, rtol=1e-12, atol=1e-12)
        # and the same gradients, for every trained parameter and the input
        trained = [inputs, *(p for p in step.parameters() if p.requires_grad)]
        weights = torch.randn(shape, generator=g, dtype=torch.float64)
        grads = torch.autograd.grad((ours * weights).sum() + log_det.sum(), trained)
        expected = torch.autograd.grad((freias * weights).sum() + freias_log_det.sum(), trained)
        for a, b in zip(grads, expected):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("image_context, positional_encoding", CONDITIONS)
def test_log_determinant_matches_brute_force_jacobian(image_context, positional_encoding):
    flow = _randomise(build_uflow(TINY, n_steps=2, image_context=image_context,
                                  positional_encoding=positional_encoding).double(), seed=1)
    x = _inputs(TINY, n=1, seed=2)
    flow.standardize_with(_inputs(TINY, n=5, seed=3))
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
    with_context = _randomise(build_uflow(TINY, n_steps=2, positional_encoding=0).double(), seed=4)
    x = _inputs(TINY, n=4, seed=5)
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
    positioned = _randomise(build_uflow(TINY, n_steps=2, positional_encoding=2).double(), seed=4)
    x = _inputs(TINY, n=4, seed=5)
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

    flow = _randomise(build_uflow(TINY, n_steps=2).double(), seed=6)
    batches = [_inputs(TINY, n=2, seed=s) for s in range(8)]
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


def test_training_lowers_the_loss_and_detects_divergence():
    flow = build_uflow(TINY, n_steps=2)
    train = [2 + 3 * t.float() for t in _inputs(TINY, n=16)]
    val = [2 + 3 * t.float() for t in _inputs(TINY, n=4, seed=5)]
    flow.standardize_with(train)
    history = train_flow(flow, train, val, max_epochs=8, batch_size=4, learning_rate=1e-2, weight_decay=0,
                         n_iter_no_change=8, tol=0, device="cpu", seed=0)
    assert history["train_bpd"][-1] < history["train_bpd"][0]
    assert 1 <= history["best_epoch"] <= 8
    bad = [t.clone() for t in train]
    bad[0][0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="learning_rate"):
        train_flow(build_uflow(TINY, n_steps=2), bad, None, max_epochs=1, batch_size=4, learning_rate=1e-2,
                   weight_decay=0, n_iter_no_change=1, tol=0, device="cpu", seed=0)


def test_weight_decay_is_decoupled_and_shrinks_only_the_couplings_weights():
    # One iteration from the same start (one batch, one epoch: the schedule's
    # factor is 1) with and without decay: AdamW's only difference is the
    # decayed weights' shrinkage, -learning_rate * weight_decay * w, however
    # large the gradients (an L2 term added to them would be drowned).
    train = [2 + 3 * t.float() for t in _inputs(TINY, n=4)]
    flows = []
    for weight_decay in (0.0, 0.5):
        flow = _randomise(build_uflow(TINY, n_steps=2))
        flow.standardize_with(train)
        start = {name: p.detach().clone() for name, p in flow.named_parameters()}
        train_flow(flow, train, None, max_epochs=1, batch_size=4, learning_rate=1e-2, weight_decay=weight_decay,
                   n_iter_no_change=1, tol=0, device="cpu", seed=0)
        flows.append(dict(flow.named_parameters()))
    decayed = 0
    for name, w0 in start.items():
        difference = flows[1][name].detach() - flows[0][name].detach()
        if ".subnet." in name and name.endswith(".weight"):
            decayed += 1
            torch.testing.assert_close(difference, -1e-2 * 0.5 * w0, atol=1e-6, rtol=1e-4)
        else:
            assert torch.equal(difference, torch.zeros_like(w0)), name
    # two steps per stage, two convolutions, one context map and one positional map per step, two stages
    assert decayed == 2 * 4 * 2


def test_feature_noise_is_scaled_to_each_channels_spread_in_the_training_features():
    # Channels whose spreads differ by a factor 100: the noise is the same
    # share of each, measured against numpy's standard deviation of the
    # training features (not the flow's own standardisation).
    shapes = [(3, 8, 8), (8, 4, 4)]
    spreads = [torch.tensor([0.1, 1.0, 10.0]), torch.linspace(0.5, 4.0, 8)]
    train = [5 + s.view(1, -1, 1, 1) * t.float() for s, t in zip(spreads, _inputs(shapes, n=64))]
    flow = build_uflow(shapes, n_steps=2)
    flow.standardize_with(train)
    zeros = [torch.zeros(400, *shape) for shape in shapes]
    noise = _noisy(zeros, flow, 0.3, torch.Generator().manual_seed(0))
    for f, n in zip(train, noise):
        expected = 0.3 * np.std(f.numpy(), axis=(0, 2, 3), ddof=1)
        np.testing.assert_allclose(n.std(dim=(0, 2, 3)).numpy(), expected, rtol=0.03)
        n_draws = n[:, 0].numel()
        assert np.all(np.abs(n.mean(dim=(0, 2, 3)).numpy()) < 4 * expected / np.sqrt(n_draws))  # centred


def test_feature_noise_changes_the_fit_reproducibly_and_validates_on_clean_features():
    train = [2 + 3 * t.float() for t in _inputs(TINY, n=8)]
    val = [2 + 3 * t.float() for t in _inputs(TINY, n=4, seed=5)]
    kept = [t.clone() for t in train + val]
    fits = []
    for noise in (0.0, 0.5, 0.5):
        flow = build_uflow(TINY, n_steps=2)
        flow.standardize_with(train)
        history = train_flow(flow, train, val, max_epochs=2, batch_size=4, learning_rate=1e-2, weight_decay=0,
                             n_iter_no_change=2, tol=0, device="cpu", seed=0, feature_noise=noise)
        fits.append((history, flow.state_dict()))
        # the restored weights' validation loss is that of the clean features
        n_dims = sum(int(np.prod(s)) for s in TINY)
        clean = _bits_per_dim(evaluate_nll(flow, val, 4, "cpu"), n_dims)
        assert history["val_bpd"][history["best_epoch"] - 1] == pytest.approx(clean, rel=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(kept, train + val))  # the cache is not modified in place
    assert all(torch.equal(fits[1][1][k], fits[2][1][k]) for k in fits[1][1])
    assert any(not torch.equal(fits[0][1][k], fits[1][1][k]) for k in fits[0][1])
    # the noisy training batches are harder to fit
    assert fits[1][0]["train_bpd"][-1] > fits[0][0]["train_bpd"][-1]


def test_copies_keep_the_number_of_steps_and_draw_one_copy_per_image(monkeypatch):
    # Copy k of image i holds the value 100 k + i everywhere: each batch shows
    # which copy of which image it took.
    n, n_copies, batch_size = 10, 4, 4
    values = (100 * torch.arange(n_copies).view(-1, 1) + torch.arange(n)).flatten().float()
    train = [values.view(-1, 1, 1, 1).expand(-1, *shape).clone() for shape in TINY]
    options = dict(max_epochs=3, batch_size=batch_size, learning_rate=1e-3, weight_decay=0, n_iter_no_change=3,
                   tol=0, device="cpu", seed=0)
    seen = []
    original = FlowTraining._batch
    monkeypatch.setattr(FlowTraining, "_batch", lambda self, index: seen.append(
        (b := original(self, index))[0][:, 0, 0, 0]) or b)
    steps = {}
    for copies in (1, n_copies):
        seen.clear()
        flow = build_uflow(TINY, n_steps=1)
        flow.standardize_with(train)
        training = FlowTraining(flow, [f[: copies * n] for f in train], None, n_copies=copies, **options)
        while training.run_epoch():
            pass
        steps[copies] = training.optimizer.state_dict()["state"][0]["step"].item()
        drawn = torch.cat(seen).long()
        per_epoch = drawn.view(3, n)
        for epoch in per_epoch:  # every image once per epoch, in one of its copies
            assert sorted((epoch % 100).tolist()) == list(range(n))
        assert set((drawn // 100).tolist()) == set(range(copies))
    assert steps[1] == steps[n_copies] == 3 * math.ceil(n / batch_size)
