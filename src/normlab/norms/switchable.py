"""Switchable Norm (Luo et al. 2018): mean and variance are softmax-weighted mixtures of IN, LN and BN
statistics (Eq. 3), with separate importance logits `mean_weight` and `var_weight` per layer.

LN and BN moments are derived from the IN ones (one pass of sums), as in the official code, but with biased
variances throughout (the paper's equations; the official code uses unbiased ones). On (N, C) features there
is no IN term, so the mixture is of LN and BN only. Forward and backward are written out by hand
(`SwitchableNormFunction`; see `norms.fused` for why), and on CPU in one process run as compiled C
(`norms.native`, when a C compiler is there). BN statistics at eval are running averages
(`bn_stats="moving"`, torch's momentum convention) or, with `bn_stats="batch_average"`, are recomputed over
training batches after training by `recompute_batch_average_`.
"""

import torch
import torch.nn.functional as F
from torch import nn

from normlab.distributed import sync_world
from normlab.norms import native
from normlab.norms.fused import (
    bn_moments,
    grad_sums,
    raw_moments,
    raw_moments_backward,
    scale_shift,
    stacked_statistics,
    statistics_backward,
)

STATISTICS = {"2d": ("in", "ln", "bn"), "1d": ("ln", "bn")}


class SwitchableNormFunction(torch.autograd.Function):
    """x (N, C, M) -> y, and the stacked statistics (2, K, N, C) of `statistics` (means; biased variances),
    whose BN ones feed the running statistics.

    Eq. 3 written out with its backward: mean = sum_k a_k mean_k, var = sum_k b_k var_k over `statistics`,
    a = softmax(mean_logits), b = softmax(var_logits), y = x * A + B with A = w / sqrt(var + eps),
    B = beta - mean * A. With `batch_stats` the BN moments are the batch's (over every rank's batch when
    `world` > 1), else the given running ones. `statistics`: ("in", "ln", "bn") on (N, C, H, W) input,
    ("ln", "bn") on (N, C)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # amp=true: in float32
    def forward(
        ctx, x, mean_logits, var_logits, weight, bias, running_mean, running_var, eps, batch_stats, world, statistics
    ):
        n, c = x.shape[:2]
        raw = raw_moments(x)  # (2, N, C)
        kinds = {
            "in": raw,
            "ln": raw.mean(2, keepdim=True),
            "bn": bn_moments(raw, running_mean, running_var, batch_stats, world),
        }
        central = None if batch_stats else statistics.index("bn")
        stats = stacked_statistics([kinds[k] for k in statistics], n, c, central)
        mixing = F.softmax(torch.stack([mean_logits, var_logits]), 1)  # (2, K): a; b
        mean, var = torch.bmm(mixing.unsqueeze(1), stats.view(2, len(statistics), -1)).view(2, n, c)
        inv_std = (var + eps).rsqrt_()
        scale = weight * inv_std  # (N, C)
        shift = torch.addcmul(bias, mean, scale, value=-1)
        ctx.save_for_backward(x, raw[0], mixing, stats, mean, inv_std, scale)
        ctx.statistics, ctx.batch_stats, ctx.world = statistics, batch_stats, world
        ctx.mark_non_differentiable(stats)
        ctx.set_materialize_grads(False)
        return scale_shift(x, scale.unsqueeze(-1), shift.unsqueeze(-1)), stats

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad, _stats):
        if grad is None:  # no gradient reached y (grads are not materialized as zeros)
            return (None,) * 11
        x, mean_in, mixing, stats, mean, inv_std, scale = ctx.saved_tensors
        d_shift, t_in = grad_sums(grad, x, mean_in)  # dB; dA - dB * mean_in: (N, C)
        u = inv_std * torch.addcmul(t_in, d_shift, mean_in - mean)  # inv_std * (dA - dB * mean)
        d_weight, d_bias = u.sum(0), d_shift.sum(0)
        # gradients of the mixed mean (-A dB) and variance (-A inv_std u / 2)
        d_mixed = torch.stack([d_shift, u.mul_(inv_std).mul_(0.5)]).mul_(scale).neg_()  # (2, N, C)
        k = len(ctx.statistics)
        d_mixing = torch.bmm(stats.view(2, k, -1), d_mixed.view(2, -1, 1)).view(2, k)
        d_logits = mixing * (d_mixing - (mixing * d_mixing).sum(1, keepdim=True))  # softmax backward
        d_stats = mixing.view(2, k, 1, 1) * d_mixed.unsqueeze(1)
        d_raw = statistics_backward(d_stats, stats, ctx.statistics, ctx.batch_stats, ctx.world)
        d_x = raw_moments_backward(x, d_raw, grad, scale.unsqueeze(-1))
        return d_x, d_logits[0], d_logits[1], d_weight, d_bias, *[None] * 6


class SwitchableNorm(nn.Module):
    def __init__(
        self,
        num_features: int,
        kind: str = "2d",
        eps: float = 1e-5,
        momentum: float = 0.1,
        bn_stats: str = "moving",
    ):
        super().__init__()
        self.num_features, self.kind, self.eps, self.momentum, self.bn_stats = (
            num_features,
            kind,
            eps,
            momentum,
            bn_stats,
        )
        self.statistics = STATISTICS[kind]
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.mean_weight = nn.Parameter(torch.ones(len(self.statistics)))
        self.var_weight = nn.Parameter(torch.ones(len(self.statistics)))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.averaged_batches: int | None = None  # counting batches while recomputing a batch average
        self.sync = False  # BN statistics over every rank's batch (norm.sync=true under torchrun)
        self.use_native = True  # the compiled CPU kernels where they apply (native.usable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        world = sync_world(self.sync and self.training)
        args = (x.reshape(n, c, -1), self.mean_weight, self.var_weight, self.weight, self.bias)
        args += (self.running_mean, self.running_var)
        momentum = self._running_momentum() if self.training else 0.0
        if world == 1 and self.use_native and native.usable(*args):  # updates the running statistics itself
            y = native.SwitchableNormNative.apply(*args, self.eps, self.training, momentum, self.statistics)
            return y.view_as(x)
        y, stats = SwitchableNormFunction.apply(*args, self.eps, self.training, world, self.statistics)
        if self.training:
            bn = self.statistics.index("bn")
            with torch.no_grad():
                self.running_mean.lerp_(stats[0, bn, 0], momentum)
                self.running_var.lerp_(stats[1, bn, 0], momentum)
        return y.view_as(x)

    def _running_momentum(self) -> float:
        """The running statistics' momentum: the layer's, or while recomputing a batch average, 1 / batches
        so far (a cumulative average)."""
        if self.averaged_batches is None:
            return self.momentum
        self.averaged_batches += 1
        return 1.0 / self.averaged_batches

    def importance(self) -> dict[str, float]:
        """The softmaxed importance weights, e.g. {'mean_in': .., 'mean_ln': .., 'mean_bn': .., 'var_in': ..}."""
        out = {}
        for prefix, logits in (("mean", self.mean_weight), ("var", self.var_weight)):
            for s, w in zip(self.statistics, F.softmax(logits.detach(), 0).tolist(), strict=False):
                out[f"{prefix}_{s}"] = w
        return out

    internals = importance

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, kind={self.kind}, eps={self.eps}, momentum={self.momentum}, bn_stats={self.bn_stats}"
        )


@torch.no_grad()
def recompute_batch_average_(model: nn.Module, batches) -> int:
    """For SN layers with bn_stats="batch_average": replace the running BN statistics by their plain average
    over `batches` (an iterable of inputs), computed in training mode without touching the weights.
    Returns the number of batches used (0 when no layer asks for it)."""
    layers = [m for m in model.modules() if isinstance(m, SwitchableNorm) and m.bn_stats == "batch_average"]
    if not layers:
        return 0
    was_training = model.training
    for m in layers:
        m.averaged_batches = 0
    used = 0
    try:
        model.train()
        for x in batches:
            model(x)
            used += 1
    finally:
        for m in layers:
            m.averaged_batches = None
        model.train(was_training)
    return used
