"""landscape=true (Santurkar et al. 2018, Fig. 4) against the measurements written out for logistic regression,
whose gradient has a closed form; the model, its buffers and the random stream are as they were after measuring,
so a run trains identically with the measurements on; eval_train adds the training images in eval mode."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.landscape import STEP_MULTIPLES, along_gradient
from normlab.trainer import train

from conftest import compose_config


def closed_form(weight, bias, x, y):
    """Cross-entropy of softmax(x Wᵀ + b) and its gradient, by hand: (p − onehot)ᵀ x / N and mean(p − onehot)."""
    logits = x @ weight.T + bias
    p = torch.softmax(logits, 1)
    onehot = F.one_hot(y, weight.shape[0]).double()
    loss = -(torch.log_softmax(logits, 1) * onehot).sum(1).mean()
    return loss.item(), torch.cat([((p - onehot).T @ x / len(y)).flatten(), (p - onehot).mean(0)])


def test_fig4_measurements_match_logistic_regression_written_out():
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double()
    x, y = torch.randn(16, 5, dtype=torch.float64) * 2, torch.randint(0, 3, (16,))
    lr = 0.7
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    loss0, g0 = closed_form(w0, b0, x, y)
    losses, changes, betas = [loss0], [], []
    for m in STEP_MULTIPLES:
        eta = lr * m
        step = eta * g0
        loss, g = closed_form(w0 - step[:15].view(3, 5), b0 - step[15:], x, y)
        losses.append(loss)
        changes.append((g - g0).norm().item())
        betas.append((g - g0).norm().item() / step.norm().item())
    got = along_gradient(model, x, y, lr)
    assert math.isclose(got["loss_range"], max(losses) - min(losses), rel_tol=1e-9)
    assert math.isclose(got["grad_change"], max(changes), rel_tol=1e-9)
    assert math.isclose(got["beta"], max(betas), rel_tol=1e-9)
    assert math.isclose(got["grad_norm"], g0.norm().item(), rel_tol=1e-9)
    assert got["loss_range"] > 0 and got["beta"] > 0


def test_measuring_leaves_weights_buffers_mode_grads_and_the_random_stream_as_they_were():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    x, y = torch.randn(12, 4), torch.randint(0, 2, (12,))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stream = torch.get_rng_state()
    along_gradient(model, x, y, lr=0.5)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN's running statistics too
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), stream)


def test_a_run_trains_identically_with_the_landscape_and_the_training_images_measured(tmp_path):
    base = ["norm=batch_noisy", "max_steps=20", "eval_every=10", "data.train_subset=500", "data.test_subset=200"]
    train(compose_config(*base), tmp_path / "off")
    train(compose_config(*base, "landscape=true", "eval_train=300"), tmp_path / "on")
    off, on = (
        [json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("off", "on")
    )
    drop = ("samples_per_s", "landscape", "trainset_loss", "trainset_acc")
    assert [{k: v for k, v in r.items() if k not in drop} for r in on] == [
        {k: v for k, v in r.items() if k != "samples_per_s"} for r in off
    ]
    assert len(on) == 2 and all(set(r["landscape"]) == {"loss_range", "grad_change", "beta", "grad_norm"} for r in on)
    assert all(0 <= r["trainset_acc"] <= 1 and r["trainset_loss"] > 0 for r in on)
    assert not any("landscape" in r or "trainset_acc" in r for r in off)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "on"))
    events.Reload()
    tags = {"landscape/loss_range", "landscape/grad_change", "landscape/beta", "landscape/grad_norm", "acc/trainset"}
    assert tags <= set(events.Tags()["scalars"])
    assert [e.value for e in events.Scalars("landscape/beta")] == pytest.approx([r["landscape"]["beta"] for r in on])
