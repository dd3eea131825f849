"""Batch-Instance Norm (Nam & Kim 2018): y = gamma * (rho * x_BN + (1 - rho) * x_IN) + beta, rho in [0, 1].

Subclasses torch's `_BatchNorm` (as the official code does) for running statistics, eval mode and
state-dict keys; both branches use torch's fused ops. The gate `rho` starts at 1 (pure BN) and is kept in
[0, 1] by `clamp_gate_()`, which the trainer calls after every optimizer step. `gate_lr_mult` declares the
gate's learning-rate multiplier (10 in the official code); the optimizer builder reads it.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.norms.batch import normalize_with_batch_stats


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
        self._check_input_dim(x)
        if self.training and self.sync:
            x_bn = normalize_with_batch_stats(self, x, sync=True)
        else:
            if self.training:
                self.num_batches_tracked.add_(1)
            x_bn = F.batch_norm(
                x, self.running_mean, self.running_var, None, None, self.training, self.momentum, self.eps
            )
        x_in = F.instance_norm(x, eps=self.eps)
        gate = self.gate.view(1, -1, 1, 1)
        y = x_in + gate * (x_bn - x_in)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    @torch.no_grad()
    def clamp_gate_(self) -> None:
        self.gate.clamp_(0.0, 1.0)

    def internals(self) -> dict[str, float]:
        return {"gate_mean": self.gate.mean().item()}
