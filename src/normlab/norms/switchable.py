"""Switchable Norm (Luo et al. 2018): mean and variance are softmax-weighted mixtures of IN, LN and BN
statistics (Eq. 3), with separate importance logits `mean_weight` and `var_weight` per layer.

LN and BN moments are derived from the IN ones (one pass of sums), as in the official code, but with biased
variances throughout (the paper's equations; the official code uses unbiased ones). On (N, C) features there
is no IN term, so the mixture is of LN and BN only. Forward and backward are written out by hand
(`SwitchableNormFunction`; see `norms.fused` for why). BN statistics at eval are running averages
(`bn_stats="moving"`, torch's momentum convention) or, with `bn_stats="batch_average"`, are recomputed over
training batches after training by `recompute_batch_average_`.
"""

import torch
import torch.nn.functional as F
from torch import nn

from normlab.distributed import sum_over_ranks_, sync_world
from normlab.norms.fused import grad_sums, moments, moments_backward

STATISTICS = {"2d": ("in", "ln", "bn"), "1d": ("ln", "bn")}


class SwitchableNormFunction(torch.autograd.Function):
    """x (N, C, M) -> y, and the BN moments (mean, biased var; (C, 1)) for the running statistics.

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
        mean_in, var_in = moments(x)  # (N, C, 1)
        second = var_in + mean_in * mean_in
        mean_ln = mean_in.mean(1, keepdim=True)  # (N, 1, 1)
        var_ln = (second.mean(1, keepdim=True) - mean_ln * mean_ln).clamp_min(0)
        count = x.shape[0] * world
        if batch_stats:
            sums = sum_over_ranks_(torch.cat([mean_in.sum(0), second.sum(0)]), world)
            mean_bn, second_bn = (sums / count).chunk(2)
            var_bn = (second_bn - mean_bn * mean_bn).clamp_min(0)  # (C, 1)
        else:
            mean_bn, var_bn = running_mean.view(-1, 1), running_var.view(-1, 1)
        means = {"in": mean_in, "ln": mean_ln, "bn": mean_bn}
        variances = {"in": var_in, "ln": var_ln, "bn": var_bn}
        a, b = F.softmax(mean_logits, 0), F.softmax(var_logits, 0)
        mean = sum(a[i] * means[k] for i, k in enumerate(statistics))
        var = sum(b[i] * variances[k] for i, k in enumerate(statistics))
        inv_std = torch.rsqrt(var + eps)
        scale = weight.view(-1, 1) * inv_std
        ctx.save_for_backward(x, a, b, mean_in, mean_ln, mean_bn, var_in, var_ln, var_bn, mean, inv_std, scale)
        ctx.statistics, ctx.batch_stats, ctx.world, ctx.count = statistics, batch_stats, world, count
        ctx.mark_non_differentiable(mean_bn, var_bn)
        return torch.addcmul(bias.view(-1, 1) - mean * scale, x, scale), mean_bn, var_bn

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad, _mean_bn, _var_bn):
        x, a, b, mean_in, mean_ln, mean_bn, var_in, var_ln, var_bn, mean, inv_std, scale = ctx.saved_tensors
        means = {"in": mean_in, "ln": mean_ln, "bn": mean_bn}
        variances = {"in": var_in, "ln": var_ln, "bn": var_bn}
        w = {k: (a[i], b[i]) for i, k in enumerate(ctx.statistics)}
        d_shift, d_scale = grad_sums(grad, x)  # dB, dA: (N, C, 1)
        t = d_scale - d_shift * mean
        d_weight = (inv_std * t).sum(0)
        d_bias = d_shift.sum(0)
        d_mean = -scale * d_shift  # gradients of the mixed mean and variance, (N, C, 1)
        d_var = -0.5 * (scale * inv_std * inv_std) * t
        d_a = torch.stack([(d_mean * means[k]).sum() for k in ctx.statistics])
        d_b = torch.stack([(d_var * variances[k]).sum() for k in ctx.statistics])
        d_mean_logits, d_var_logits = a * (d_a - (a * d_a).sum()), b * (d_b - (b * d_b).sum())
        # to the instance moments, from which the LN (over C) and BN (over N) moments derive
        d_mean_in = w["in"][0] * d_mean if "in" in w else torch.zeros_like(mean_in)
        d_var_in = w["in"][1] * d_var if "in" in w else torch.zeros_like(var_in)
        c = x.shape[1]
        d_mean_ln, d_var_ln = w["ln"][0] * d_mean.sum(1, keepdim=True), w["ln"][1] * d_var.sum(1, keepdim=True)
        d_mean_in = d_mean_in + (d_mean_ln + 2 * d_var_ln * (mean_in - mean_ln)) / c
        d_var_in = d_var_in + d_var_ln / c
        if ctx.batch_stats:
            d_bn = sum_over_ranks_(torch.cat([w["bn"][0] * d_mean.sum(0), w["bn"][1] * d_var.sum(0)]), ctx.world)
            d_mean_bn, d_var_bn = d_bn.chunk(2)
            d_mean_in = d_mean_in + (d_mean_bn + 2 * d_var_bn * (mean_in - mean_bn)) / ctx.count
            d_var_in = d_var_in + d_var_bn / ctx.count
        d_x = moments_backward(x, mean_in, d_mean_in, d_var_in).addcmul_(grad, scale)
        return d_x, d_mean_logits, d_var_logits, d_weight.view(-1), d_bias.view(-1), *[None] * 6


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        world = sync_world(self.sync and self.training)
        y, mean_bn, var_bn = SwitchableNormFunction.apply(
            x.reshape(n, c, -1),
            self.mean_weight,
            self.var_weight,
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            self.eps,
            self.training,
            world,
            self.statistics,
        )
        if self.training:
            self._update_running(mean_bn.view(-1), var_bn.view(-1))
        return y.view_as(x)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        if self.averaged_batches is None:
            momentum = self.momentum
        else:  # cumulative average over the recomputation batches
            self.averaged_batches += 1
            momentum = 1.0 / self.averaged_batches
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(var, momentum)

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
