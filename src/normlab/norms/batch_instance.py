"""Batch-Instance Norm (Nam & Kim 2018): y = gamma * (rho * x_BN + (1 - rho) * x_IN) + beta, rho in [0, 1].

Subclasses torch's `_BatchNorm` (as the official code does) for running statistics, eval mode and
state-dict keys; the moments and y = x * A + B are the two full-size passes of `norms.fused`. The gate `rho`
starts at 1 (pure BN) and is kept in [0, 1] by `clamp_gate_()`, which the trainer calls after every optimizer
step. `gate_lr_mult` declares the gate's learning-rate multiplier (10 in the official code); the optimizer
builder reads it.
"""

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.distributed import batch_moments
from normlab.norms.fused import instance_moments, scale_shift


class BatchInstanceNorm(_BatchNorm):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, gate_lr_mult: float = 10.0):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=True, track_running_stats=True)
        self.gate = nn.Parameter(torch.ones(num_features))
        self.gate_lr_mult = gate_lr_mult
        self.sync = False  # BN statistics over every rank's batch (norm.sync=true under torchrun)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"batch_instance expects (N, C, H, W) input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One pass of per-(sample, channel) moments; the BN moments derive from them (or, with `sync`, are
        all-reduced over ranks); then both normalizations, the gate and the affine fold into y = x * A + B."""
        self._check_input_dim(x)
        n, c = x.shape[:2]
        xf = x.reshape(n, c, -1)
        mean_in, var_in = instance_moments(xf)  # (N, C, 1)
        if self.training:
            if self.sync:
                mean_bn, var_bn, count = batch_moments(xf, [0, 2], sync=True)
                mean_bn, var_bn = mean_bn.view(1, c, 1), var_bn.view(1, c, 1)
            else:
                mean_bn = mean_in.mean(0, keepdim=True)
                var_bn = ((var_in + mean_in**2).mean(0, keepdim=True) - mean_bn**2).clamp_min(0)
                count = x.numel() // c
            with torch.no_grad():  # running statistics as F.batch_norm keeps them (unbiased variance)
                self.running_mean.lerp_(mean_bn.flatten(), self.momentum)
                self.running_var.lerp_(var_bn.flatten() * count / max(count - 1, 1), self.momentum)
                self.num_batches_tracked.add_(1)
        else:
            mean_bn, var_bn = self.running_mean.view(1, c, 1), self.running_var.view(1, c, 1)
        s_bn, s_in = torch.rsqrt(var_bn + self.eps), torch.rsqrt(var_in + self.eps)
        gate, weight = self.gate.view(1, c, 1), self.weight.view(1, c, 1)
        scale = (s_in + gate * (s_bn - s_in)) * weight
        shift = self.bias.view(1, c, 1) - (mean_in * s_in + gate * (mean_bn * s_bn - mean_in * s_in)) * weight
        return scale_shift(xf, scale, shift).view_as(x)

    @torch.no_grad()
    def clamp_gate_(self) -> None:
        self.gate.clamp_(0.0, 1.0)

    def internals(self) -> dict[str, float]:
        return {"gate_mean": self.gate.mean().item()}
