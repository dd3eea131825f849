"""Switchable Norm (Luo et al. 2018): mean and variance are softmax-weighted mixtures of IN, LN and BN
statistics (Eq. 3), with separate importance logits `mean_weight` and `var_weight` per layer.

LN and BN moments are derived from the IN ones (one pass of sums), as in the official code, but with biased
variances throughout (the paper's equations; the official code uses unbiased ones). On (N, C) features there
is no IN term, so the mixture is of LN and BN only. Forward and backward are written out by hand
(`SwitchableNormFunction`; see `norms.fused` for why), and on CPU in one process run as compiled C
(`norms.native`, when a C compiler is there). BN statistics at eval are running averages
(`bn_stats="moving"`, torch's momentum convention) or, with `bn_stats="batch_average"`, are recomputed over
training batches before each evaluation (`norms.population`).
"""

import torch
import torch.nn.functional as F
from torch import nn

from normlab.collectives import sync_world
from normlab.norms import native
from normlab.norms.fused import (
    STATS,
    bn_statistics,
    centred_input_grad,
    grad_sums,
    pooled,
    row_statistics,
    scale_shift,
    statistics_backward,
)
from normlab.norms.registry import register_norm

STATISTICS = {"2d": ("in", "ln", "bn"), "1d": ("ln", "bn")}
VARIANTS = ("paper", "official")


def unbias(count: int) -> float:
    return count / (count - 1) if count > 1 else 1.0


def variance_factors(statistics: tuple[str, ...], n: int, c: int, m: int) -> dict[str, float]:
    """What the official code multiplies the biased variances by: on (N, C, H, W) input the IN (row) variances
    are unbiased, M / (M - 1), and LN's and BN's pooled from them; on (N, C) the LN and BN variances are unbiased
    over C and N."""
    if "in" in statistics:
        return {"row": unbias(m), "ln": 1.0, "bn": 1.0}
    return {"row": 1.0, "ln": unbias(c), "bn": unbias(n)}


class SwitchableNormFunction(torch.autograd.Function):
    """x (N, C, M) -> y, and BN's statistics (2, C) (mean; biased variance) in x's dtype, for the running ones.

    Eq. 3 written out with its backward: mean = sum_k a_k mean_k, var = sum_k b_k var_k over `statistics`,
    a = softmax(mean_logits), b = softmax(var_logits), y = (x - mean) * A + beta with A = w / sqrt(var + eps),
    computed as d * A + B' on the centred input d = x - shift (see `norms.fused`). With `batch_stats` the BN
    moments are the batch's (over every rank's batch when `world` > 1), else the given running ones.
    `statistics`: ("in", "ln", "bn") on (N, C, H, W) input, ("ln", "bn") on (N, C)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # amp=true: in float32
    def forward(
        ctx,
        x,
        mean_logits,
        var_logits,
        weight,
        bias,
        running_mean,
        running_var,
        eps,
        batch_stats,
        world,
        statistics,
        unbiased=False,
    ):
        n, c, m = x.shape
        d, shift, rows = row_statistics(x)  # rows: (2, N, C) float64
        factors = variance_factors(statistics, n * world, c, m) if unbiased else None  # the official variant's
        if factors:
            rows[1].mul_(factors["row"])
        kinds = {
            "in": rows,
            "ln": pooled(rows, 1),
            "bn": bn_statistics(rows, running_mean, running_var, batch_stats, world),
        }
        if factors:  # LN's and BN's (batch) variances; running ones are kept as they are
            for k in ("ln", "bn") if batch_stats else ("ln",):
                kinds[k][1].mul_(factors[k])
        stats = torch.stack([kinds[k].expand(2, n, c) for k in statistics], 1)  # (2, K, N, C)
        mixing = F.softmax(torch.stack([mean_logits, var_logits]).to(STATS), 1)  # (2, K): a; b
        mean, var = torch.bmm(mixing.unsqueeze(1), stats.reshape(2, len(statistics), -1)).view(2, n, c)
        inv_std = (var + eps).rsqrt_()
        scale = weight.to(STATS) * inv_std  # (N, C)
        offset = torch.addcmul(bias.to(STATS), shift.to(STATS) - mean, scale)
        ctx.save_for_backward(d, shift, rows, mixing, stats, mean, inv_std, scale)
        ctx.statistics, ctx.batch_stats, ctx.world, ctx.factors = statistics, batch_stats, world, factors
        ctx.set_materialize_grads(False)
        y = scale_shift(d, scale.to(x.dtype).unsqueeze(-1), offset.to(x.dtype).unsqueeze(-1))
        bn = kinds["bn"].view(2, c).to(x.dtype)
        ctx.mark_non_differentiable(bn)
        return y, bn

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad, _stats):
        if grad is None:  # no gradient reached y (grads are not materialized as zeros)
            return (None,) * 12
        d, shift, rows, mixing, stats, mean, inv_std, scale = ctx.saved_tensors
        mean_in = rows[0]
        d_shift, t_in = grad_sums(grad, d, mean_in - shift.to(STATS))  # sum g; sum g (x - mean_in): (N, C)
        u = inv_std * torch.addcmul(t_in, d_shift, mean_in - mean)  # inv_std * sum g (x - mean)
        d_weight, d_bias = u.sum(0), d_shift.sum(0)
        # gradients of the mixed mean (-A dB) and variance (-A inv_std u / 2)
        d_mixed = torch.stack([d_shift, u.mul_(inv_std).mul_(0.5)]).mul_(scale).neg_()  # (2, N, C)
        k = len(ctx.statistics)
        d_mixing = torch.bmm(stats.view(2, k, -1), d_mixed.view(2, -1, 1)).view(2, k)
        d_logits = mixing * (d_mixing - (mixing * d_mixing).sum(1, keepdim=True))  # softmax backward
        d_stats = mixing.view(2, k, 1, 1) * d_mixed.unsqueeze(1)
        if ctx.factors:  # the official variant's variances: the same factors on their gradients
            for q, kind in enumerate(ctx.statistics):
                if kind != "in":
                    d_stats[1, q].mul_(ctx.factors[kind])
        d_rows = statistics_backward(d_stats, stats, rows, ctx.statistics, ctx.batch_stats, ctx.world)
        if ctx.factors:
            d_rows[1].mul_(ctx.factors["row"])
        d_x = centred_input_grad(d, shift, rows, d_rows, grad, scale.to(d.dtype).unsqueeze(-1))
        dtype = d.dtype
        d_logits, d_weight, d_bias = d_logits.to(dtype), d_weight.to(dtype), d_bias.to(dtype)
        return d_x, d_logits[0], d_logits[1], d_weight, d_bias, *[None] * 7


@register_norm("switchable", options=("eps", "momentum", "bn_stats", "variant"), batch_stats=True)
class SwitchableNorm(nn.Module):
    def __init__(
        self,
        num_features: int,
        kind: str = "2d",
        eps: float = 1e-5,
        momentum: float = 0.1,
        bn_stats: str = "moving",
        variant: str = "paper",
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"switchable variant {variant!r} is not allowed; choose from {list(VARIANTS)}")
        self.num_features, self.kind, self.eps, self.momentum = num_features, kind, eps, momentum
        self.bn_stats, self.variant = bn_stats, variant
        self.statistics = STATISTICS[kind]
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.mean_weight = nn.Parameter(torch.ones(len(self.statistics)))
        self.var_weight = nn.Parameter(torch.ones(len(self.statistics)))
        self.register_buffer("running_mean", torch.zeros(num_features))
        # the paper's running variance starts at 1 (torch's BN); the official code's at 0
        self.register_buffer(
            "running_var", torch.ones(num_features) if variant == "paper" else torch.zeros(num_features)
        )
        self.averaged_batches: int | None = None  # counting batches while recomputing a batch average
        self.sync = False  # BN statistics over every rank's batch (norm.sync=true under torchrun)
        self.use_native = True  # the compiled CPU kernels where they apply (native.usable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        world = sync_world(self.sync and self.training)
        args = (x.reshape(n, c, -1), self.mean_weight, self.var_weight, self.weight, self.bias)
        args += (self.running_mean, self.running_var)
        momentum = self._running_momentum() if self.training else 0.0
        official = self.variant == "official"  # the compiled kernels compute the paper's statistics
        if world == 1 and self.use_native and not official and native.usable(*args):  # updates the running stats
            has_in = self.statistics[0] == "in"
            y = native.switchable_norm(
                args[0],
                self.mean_weight,
                self.var_weight,
                self.weight,
                self.bias,
                self.running_mean,
                self.running_var,
                self.eps,
                self.training,
                momentum,
                has_in,
            )
            return y.view_as(x)
        y, bn = SwitchableNormFunction.apply(*args, self.eps, self.training, world, self.statistics, official)
        if self.training:
            with torch.no_grad():
                self.running_mean.lerp_(bn[0], momentum)
                # the official batch average accumulates E[mean^2 + var]: the pooled variance once finalised
                second = bn[1] + bn[0].square() if official and self.averaged_batches is not None else bn[1]
                self.running_var.lerp_(second, momentum)
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
            f"{self.num_features}, kind={self.kind}, eps={self.eps}, momentum={self.momentum}, "
            f"bn_stats={self.bn_stats}, variant={self.variant}"
        )
