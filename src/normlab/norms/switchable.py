"""Switchable Norm (Luo et al. 2018): mean and variance are softmax-weighted mixtures of IN, LN and BN
statistics (Eq. 3), with separate importance logits `mean_weight` and `var_weight` per layer.

LN and BN moments are derived from the IN ones (one pass of sums, `norms.fused`), as in the official code,
but with biased variances throughout (the paper's equations; the official code uses unbiased ones). On (N, C)
features there is no IN term, so the mixture is of LN and BN only. BN statistics at eval are running averages
(`bn_stats="moving"`, torch's momentum convention) or, with `bn_stats="batch_average"`, are recomputed over
training batches after training by `recompute_batch_average_`.
"""

import torch
import torch.nn.functional as F
from torch import nn

from normlab.distributed import batch_moments
from normlab.norms.fused import instance_moments, scale_shift

STATISTICS = {"2d": ("in", "ln", "bn"), "1d": ("ln", "bn")}


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
        xf = x.reshape(n, c, -1)
        mean_in, var_in = instance_moments(xf)  # (N, C, 1)
        second_moment = var_in + mean_in**2
        mean_ln = mean_in.mean(1, keepdim=True)  # (N, 1, 1)
        var_ln = (second_moment.mean(1, keepdim=True) - mean_ln**2).clamp_min(0)
        if self.training and self.sync:
            mean_bn, var_bn, _ = batch_moments(xf, [0, 2], sync=True)
            mean_bn, var_bn = mean_bn.view(1, c, 1), var_bn.view(1, c, 1)
            self._update_running(mean_bn.detach().view(c), var_bn.detach().view(c))
        elif self.training:
            mean_bn = mean_in.mean(0, keepdim=True)  # (1, C, 1)
            var_bn = (second_moment.mean(0, keepdim=True) - mean_bn**2).clamp_min(0)
            self._update_running(mean_bn.detach().view(c), var_bn.detach().view(c))
        else:
            mean_bn, var_bn = self.running_mean.view(1, c, 1), self.running_var.view(1, c, 1)
        means = {"in": mean_in, "ln": mean_ln, "bn": mean_bn}
        variances = {"in": var_in, "ln": var_ln, "bn": var_bn}
        mw, vw = F.softmax(self.mean_weight, 0), F.softmax(self.var_weight, 0)
        mean = sum(mw[i] * means[s] for i, s in enumerate(self.statistics))
        var = sum(vw[i] * variances[s] for i, s in enumerate(self.statistics))
        scale = torch.rsqrt(var + self.eps) * self.weight.view(1, c, 1)  # y = x * A + B: one pass over x
        shift = self.bias.view(1, c, 1) - mean * scale
        return scale_shift(xf, scale, shift).view_as(x)

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
