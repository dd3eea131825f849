"""Batch-Instance Norm (Nam & Kim 2018): y = gamma * (rho * x_BN + (1 - rho) * x_IN) + beta, rho in [0, 1].

Subclasses torch's `_BatchNorm` (as the official code does) for running statistics, eval mode and state-dict keys.
Forward and backward are written out by hand (`BatchInstanceNormFunction`): one pass of per-(sample, channel) sums,
y = x * A + B, and a backward of one pass of sums and one of x * a + g * A + b, as torch's own batch-norm kernels
do; left to autograd, the ~40 small ops in between cost more than the layer at small batches. On a GPU the same sum
is cheaper as two of cuDNN's batch-norm kernels (`forward_kernels`: BN with gain gamma*rho plus IN, i.e. BN over
(1, N*C) channels, with gain gamma*(1-rho)): 2.6-2.7x nn.BatchNorm2d there against 6.6-7.5x for the Function's ~70
kernel launches. The gate `rho` starts at 1 (pure BN) and is kept in [0, 1] by `clamp_gate_()`, which the trainer
calls after every optimizer step. `gate_lr_mult` declares the gate's learning-rate multiplier (10 in the official
code); the optimizer builder reads it.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.distributed import sum_over_ranks_, sync_world
from normlab.norms.batch import update_running_stats_
from normlab.norms.fused import grad_sums, moments, moments_backward


class BatchInstanceNormFunction(torch.autograd.Function):
    """x (N, C, M) -> y, and the BN moments (mean, biased var; (C, 1)) for the running statistics.

    With `batch_stats` the BN moments are the batch's (over every rank's batch when `world` > 1), else the
    given running ones. Notation of the backward: t = dA - dB * mean, per (sample, channel)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # amp=true: in float32
    def forward(ctx, x, gate, weight, bias, running_mean, running_var, eps, batch_stats, world):
        mean_in, var_in = moments(x)  # (N, C, 1)
        s_in = torch.rsqrt(var_in + eps)
        count = x.shape[0] * world
        if batch_stats:
            sums = sum_over_ranks_(torch.cat([mean_in.sum(0), (var_in + mean_in * mean_in).sum(0)]), world)
            mean_bn, second = (sums / count).chunk(2)
            var_bn = (second - mean_bn * mean_bn).clamp_min(0)  # (C, 1)
        else:
            mean_bn, var_bn = running_mean.view(-1, 1), running_var.view(-1, 1)
        s_bn = torch.rsqrt(var_bn + eps)
        gate, weight = gate.view(-1, 1), weight.view(-1, 1)
        q, r = gate * s_bn, (1 - gate) * s_in  # BN and IN shares of the scale
        scale = weight * (q + r)
        shift = bias.view(-1, 1) - weight * (q * mean_bn + r * mean_in)
        ctx.save_for_backward(x, gate, weight, mean_in, s_in, mean_bn, s_bn, scale)
        ctx.batch_stats, ctx.world, ctx.count = batch_stats, world, count
        ctx.mark_non_differentiable(mean_bn, var_bn)
        return torch.addcmul(shift, x, scale), mean_bn, var_bn

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad, _mean_bn, _var_bn):
        x, gate, weight, mean_in, s_in, mean_bn, s_bn, scale = ctx.saved_tensors
        d_shift, d_scale = grad_sums(grad, x)  # dB, dA: (N, C, 1)
        t_in, t_bn = d_scale - d_shift * mean_in, d_scale - d_shift * mean_bn
        d_weight = (gate * s_bn * t_bn + (1 - gate) * s_in * t_in).sum(0)
        d_gate = (weight * (s_bn * t_bn - s_in * t_in)).sum(0)
        d_bias = d_shift.sum(0)
        w_in = weight * (1 - gate)
        d_mean_in = -w_in * s_in * d_shift
        d_var_in = -0.5 * w_in * t_in * s_in**3
        if ctx.batch_stats:  # through the batch moments, which derive from every sample's instance moments
            w_bn = weight * gate
            d_bn = sum_over_ranks_(torch.cat([(w_bn * t_bn).sum(0), -(w_bn * s_bn * d_shift).sum(0)]), ctx.world)
            d_s_bn, d_mean_bn = d_bn.chunk(2)
            d_var_bn = -0.5 * d_s_bn * s_bn**3
            d_mean_in = d_mean_in + (d_mean_bn + 2 * d_var_bn * (mean_in - mean_bn)) / ctx.count
            d_var_in = d_var_in + d_var_bn / ctx.count
        d_x = moments_backward(x, mean_in, d_mean_in, d_var_in).addcmul_(grad, scale)
        return d_x, d_gate.view(-1), d_weight.view(-1), d_bias.view(-1), *[None] * 5


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
        world = sync_world(self.sync and self.training)
        if x.is_cuda and world == 1:
            return self.forward_kernels(x)
        return self.forward_function(x, world)

    def forward_kernels(self, x: torch.Tensor) -> torch.Tensor:
        """BN(x) * gamma*rho + beta + IN(x) * gamma*(1-rho), each one of torch's batch-norm kernels (IN as BN of
        x viewed as (1, N*C, H, W)); F.batch_norm updates the running statistics as torch's BN does."""
        n, c = x.shape[:2]
        w_bn = self.weight * self.gate
        w_in = self.weight - w_bn
        y_bn = F.batch_norm(
            x, self.running_mean, self.running_var, w_bn, self.bias, self.training, self.momentum, self.eps
        )
        y_in = F.batch_norm(x.reshape(1, n * c, *x.shape[2:]), None, None, w_in.repeat(n), None, True, 0.0, self.eps)
        if self.training:
            self.num_batches_tracked.add_(1)
        return y_bn + y_in.view_as(x)

    def forward_function(self, x: torch.Tensor, world: int = 1) -> torch.Tensor:
        """The hand-written BatchInstanceNormFunction (CPU, and BN statistics synchronized over `world` ranks)."""
        n, c = x.shape[:2]
        y, mean_bn, var_bn = BatchInstanceNormFunction.apply(
            x.reshape(n, c, -1),
            self.gate,
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            self.eps,
            self.training,
            world,
        )
        if self.training:
            update_running_stats_(self, mean_bn.view(-1), var_bn.view(-1), x.numel() // c * world)
        return y.view_as(x)

    @torch.no_grad()
    def clamp_gate_(self) -> None:
        self.gate.clamp_(0.0, 1.0)

    def internals(self) -> dict[str, float]:
        return {"gate_mean": self.gate.mean().item()}
