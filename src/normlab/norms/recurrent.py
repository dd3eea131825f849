"""Norms for recurrent cells, applied to (N, F) at step t or to (N, T, F) for all steps at once.

- `layer`: LN over the F features of each sample (Ba et al. 2016, Sec. 3.1), the same at every step.
- `batch`: recurrent BN (Cooijmans et al. 2016): batch statistics per time step, running statistics per step
  for eval (steps beyond the longest kept reuse the last; with bn_stats="batch_average" the paper's average over
  training batches, `norms.population`), gain and bias shared over time, gain initialised to 0.1 (Sec. 4).
Each form declares the registered norm it serves (`registry.register_sequence_form`); `build_sequence_norm` builds
it, so the LSTM never names a class or a norm. `none` and `weight` put identity in a cell's norm slots.
"""

import torch
import torch.nn.functional as F
from torch import nn

from normlab.norms.registry import build_sequence_norm, register_sequence_form

__all__ = ["SequenceIdentity", "SequenceLayerNorm", "StepwiseBatchNorm", "build_sequence_norm"]


@register_sequence_form("weight")  # weight norm lives on W_x and W_h
@register_sequence_form("none")
class SequenceIdentity(nn.Module):
    def __init__(self, num_features: int = 0, steps: int = 0):
        super().__init__()

    def forward(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        return x


@register_sequence_form("layer")
class SequenceLayerNorm(nn.LayerNorm):
    """LN over the last (feature) dim; `t` is ignored: the statistics are the sample's own at every step."""

    momentum = 0.0  # for NormLSTM's compiled step (norms.native.lstm_step): no running statistics

    def __init__(self, num_features: int, steps: int = 0, eps: float = 1e-5):
        super().__init__(num_features, eps=eps)

    def step_statistics(self, t: int) -> tuple[None, None]:
        return None, None

    def forward(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        return super().forward(x)


@register_sequence_form("batch")
class StepwiseBatchNorm(nn.Module):
    """BN with separate statistics for each time step: running_mean/var of shape (steps, F)."""

    def __init__(
        self,
        num_features: int,
        steps: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        gain_init: float = 0.1,
        bn_stats: str = "moving",
    ):
        super().__init__()
        self.num_features, self.steps, self.eps, self.momentum = num_features, steps, eps, momentum
        self.bn_stats = bn_stats  # "batch_average": population statistics recomputed (norms.population)
        self.weight = nn.Parameter(torch.full((num_features,), gain_init))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(steps, num_features))
        self.register_buffer("running_var", torch.ones(steps, num_features))

    def forward(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        if t is None:  # (N, T, F): every step at once; per-(t, f) statistics are per-column stats of (N, T*F)
            n, steps, f = x.shape
            if steps > self.steps:
                raise ValueError(f"sequence of {steps} steps is longer than the {self.steps} this layer keeps")
            # leading rows of a contiguous buffer: these are views, so F.batch_norm updates the buffers in place
            mean, var = self.running_mean[:steps].view(-1), self.running_var[:steps].view(-1)
            # gain and bias are shared over time: repeated per step, they stay inside BN's fused kernel
            weight, bias = self.weight.repeat(steps), self.bias.repeat(steps)
            y = F.batch_norm(x.reshape(n, steps * f), mean, var, weight, bias, self.training, self.momentum, self.eps)
            return y.view(n, steps, f)
        mean, var = self.step_statistics(t)
        return F.batch_norm(x, mean, var, self.weight, self.bias, self.training, self.momentum, self.eps)

    def step_statistics(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step t's running (mean, var): views that an in-place update writes through."""
        t = min(t, self.steps - 1)
        return self.running_mean[t], self.running_var[t]

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, steps={self.steps}, eps={self.eps}, momentum={self.momentum}, "
            f"bn_stats={self.bn_stats}"
        )
