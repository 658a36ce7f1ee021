import math

import numpy as np
import pytest
import torch

from flow_helpers import TINY, inputs, randomise
from sklearn_uflow.flow import build_uflow
from sklearn_uflow.training import (FlowTraining, HeldOutFit, TrainingDivergedError, bits_per_dim, fit_every_image,
                                    fit_held_out, lower_held_out_loss, per_image_nll)

OPTIONS = dict(batch_size=4, learning_rate=1e-2, weight_decay=0, device="cpu", seed=0)


def features(n, seed=0):
    return [2 + 3 * t.float() for t in inputs(TINY, n=n, seed=seed)]


def test_held_out_fit_stops_on_the_pooled_loss_and_restores_each_flows_best_epoch():
    data = features(20)
    splits = [(np.arange(10, 20), np.arange(10)), (np.arange(10), np.arange(10, 20))]
    fit = fit_held_out(lambda: build_uflow(TINY, n_steps=2), data, splits, max_epochs=8, n_iter_no_change=2,
                       tol=0, **OPTIONS)
    history = fit.history
    assert history["train_bpd"][-1] < history["train_bpd"][0]
    assert len(history["val_bpd"]) == len(history["train_bpd"]) <= 8
    best = history["best_epoch"]
    assert history["val_bpd"][best - 1] == min(history["val_bpd"])
    assert len(history["val_bpd"]) in (8, best + 2)  # stopped by the budget or two epochs without progress
    # the returned flows are those of the best epoch: their pooled held-out loss, computed again, is its figure
    nll = np.concatenate([per_image_nll(flow, data, val, 3, "cpu") for flow, (_, val) in zip(fit.flows, splits)])
    n_dims = sum(int(np.prod(s)) for s in TINY)
    assert bits_per_dim(nll.mean(), n_dims) == pytest.approx(history["val_bpd"][best - 1], abs=1e-9)
    # two flows from the same start, trained on different halves
    weights = [dict(flow.named_parameters()) for flow in fit.flows]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_held_out_fit_detects_divergence():
    bad = features(8)
    bad[0][0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="learning_rate"):
        fit_held_out(lambda: build_uflow(TINY, n_steps=2), bad, [(np.arange(8), np.arange(0))], max_epochs=1,
                     n_iter_no_change=1, tol=0, **OPTIONS)


def test_without_held_out_images_the_last_epoch_is_kept():
    fit = fit_held_out(lambda: build_uflow(TINY, n_steps=1), features(8), [(np.arange(8), np.arange(0))],
                       max_epochs=3, n_iter_no_change=1, tol=0, **OPTIONS)
    assert fit.history["best_epoch"] == len(fit.history["train_bpd"]) == 3 and fit.history["val_bpd"] == []


def test_the_final_flow_trains_on_every_image_for_the_epochs_given():
    data = features(12)
    fit = fit_every_image(lambda: build_uflow(TINY, n_steps=1), data, epochs=3, max_epochs=8, **OPTIONS)
    assert len(fit.train_bpd) == 3 and fit.train_bpd[-1] < fit.train_bpd[0]
    # its standardisation is every image's: the features' mean over all twelve, not over a fold's
    for s, f in enumerate(data):
        torch.testing.assert_close(getattr(fit.flow, f"mean_{s}").flatten(), f.double().mean(dim=(0, 2, 3)).float())


def test_the_copies_are_chosen_by_the_lower_held_out_loss_and_a_tie_keeps_the_first():
    def fit(*losses):
        return HeldOutFit([], {"val_bpd": list(losses)})

    assert lower_held_out_loss({"none": fit(3.0, 2.5, 2.6), "eight": fit(2.9, 2.4)}) == (
        "eight", {"none": 2.5, "eight": 2.4})
    assert lower_held_out_loss({"none": fit(2.0, 2.4), "eight": fit(2.5, 2.0)})[0] == "none"  # a tie
    assert lower_held_out_loss({"none": fit(1.0), "flips": fit(1.5)})[0] == "none"


def test_weight_decay_is_decoupled_and_shrinks_only_the_couplings_weights():
    # One iteration from the same start (one batch, one epoch: the schedule's
    # factor is 1) with and without decay: AdamW's only difference is the
    # decayed weights' shrinkage, -learning_rate * weight_decay * w, however
    # large the gradients (an L2 term added to them would be drowned).
    train = features(4)
    flows = []
    for weight_decay in (0.0, 0.5):
        flow = randomise(build_uflow(TINY, n_steps=2))
        start = {name: p.detach().clone() for name, p in flow.named_parameters()}
        FlowTraining(flow, train, np.arange(4), n_rows=4, max_epochs=1, batch_size=4, learning_rate=1e-2,
                     weight_decay=weight_decay, device="cpu", seed=0).run_epoch()
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


def test_an_epoch_takes_every_training_image_once_as_a_random_copy(monkeypatch):
    # Copy k of image i holds the value 100 k + i everywhere: each batch shows
    # which copy of which image it took.
    n, n_copies, batch_size = 10, 4, 4
    values = (100 * torch.arange(n_copies).view(-1, 1) + torch.arange(n)).flatten().float()
    rows = [values.view(-1, 1, 1, 1).expand(-1, *shape).clone() for shape in TINY]
    train_index = np.array([0, 2, 3, 5, 7, 8, 9])  # images 1, 4 and 6 are held out
    seen = []
    flow = build_uflow(TINY, n_steps=1)
    original = flow.forward
    monkeypatch.setattr(flow, "forward", lambda x, *a, **k: seen.append(x[0][:, 0, 0, 0].clone()) or original(x))
    training = FlowTraining(flow, rows, train_index, n_rows=n, n_copies=n_copies, max_epochs=3,
                            batch_size=batch_size, learning_rate=1e-3, weight_decay=0, device="cpu", seed=0)
    copies = []
    for _ in range(3):
        seen.clear()
        training.run_epoch()
        drawn = torch.cat(seen).long()
        np.testing.assert_array_equal(np.sort(drawn % 100), train_index)  # each image once, as some copy
        copies.append(drawn // 100)
        assert len(seen) == math.ceil(len(train_index) / batch_size)
    assert len(torch.unique(torch.cat(copies))) > 1  # the copies vary
    # the schedule spans the budget's steps: after 3 epochs of 2 steps the learning rate has come down to zero
    assert training.optimizer.param_groups[0]["lr"] == 0


