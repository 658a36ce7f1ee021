import math

import pytest
import torch

from flow_helpers import TINY, inputs, randomise
from sklearn_uflow.flow import build_uflow
from sklearn_uflow.training import FlowTraining, TrainingDivergedError, train_flow


def test_training_lowers_the_loss_and_detects_divergence():
    flow = build_uflow(TINY, n_steps=2)
    train = [2 + 3 * t.float() for t in inputs(TINY, n=16)]
    val = [2 + 3 * t.float() for t in inputs(TINY, n=4, seed=5)]
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
    train = [2 + 3 * t.float() for t in inputs(TINY, n=4)]
    flows = []
    for weight_decay in (0.0, 0.5):
        flow = randomise(build_uflow(TINY, n_steps=2))
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
