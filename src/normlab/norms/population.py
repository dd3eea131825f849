"""Population statistics as a plain average over training batches (`norm.bn_stats=batch_average`), instead of
running averages: the recurrent BN paper estimates them "over the whole dataset" (Cooijmans et al. 2016, Sec. 4),
and on sparse inputs a running average forgets (a pixel nonzero in one image of a thousand decays to variance ~0
between sightings; at eval that image's input is then scaled by 1/sqrt(eps)). Each layer keeps its own mode:
BN (`batch`), recurrent BN (per time step) and SN's BN statistics."""

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.norms.recurrent import StepwiseBatchNorm
from normlab.norms.switchable import SwitchableNorm


def averaging_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of `model` whose population statistics are a batch average (bn_stats="batch_average")."""
    kinds = (_BatchNorm, StepwiseBatchNorm, SwitchableNorm)
    return [m for m in model.modules() if isinstance(m, kinds) and getattr(m, "bn_stats", "") == "batch_average"]


@torch.no_grad()
def recompute_batch_average_(model: nn.Module, batches) -> int:
    """Replace the running statistics of every averaging layer by their plain average over `batches` (an
    iterable of inputs), computed in training mode without touching the weights or the caller's random state
    (h_0 noise, dropout): BN and recurrent BN average the batch means and unbiased variances, as a momentum of
    1/k at the k-th batch; SN with variant="official" pools the variance, mean(var + mean^2) - mean(mean)^2, as
    the official code finalises it. Returns the number of batches used (0 when no layer asks for it)."""
    layers = averaging_layers(model)
    if not layers:
        return 0
    switchable = [m for m in layers if isinstance(m, SwitchableNorm)]
    by_momentum = [m for m in layers if not isinstance(m, SwitchableNorm)]
    momenta, was_training = [m.momentum for m in by_momentum], model.training
    devices = [x.index for x in {p.device for p in model.parameters()} if x.type == "cuda"]
    used = 0
    try:
        with torch.random.fork_rng(devices=devices):
            for m in switchable:
                m.averaged_batches = 0
            model.train()
            for x in batches:
                used += 1
                for m in by_momentum:
                    m.momentum = 1.0 / used
                model(x)
        for m in switchable:
            if m.variant == "official":
                m.running_var.sub_(m.running_mean.square())
    finally:
        for m in switchable:
            m.averaged_batches = None
        for m, momentum in zip(by_momentum, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return used
