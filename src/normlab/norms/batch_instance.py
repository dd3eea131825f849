"""Batch-Instance Norm (Nam & Kim 2018): y = gamma * (rho * x_BN + (1 - rho) * x_IN) + beta, rho in [0, 1].

Subclasses torch's `_BatchNorm` (as the official code does) for running statistics, eval mode and state-dict keys.
Forward and backward are written out by hand (`BatchInstanceNormFunction`, on the passes of `norms.fused`): one pass
of per-(sample, channel) sums, y = x * A + B, and a backward of one pass of sums and dx = g * A + x * a + b, as
torch's own batch-norm kernels do; left to autograd, the small ops in between cost more than the layer at small
batches. On CPU in one process the same arithmetic runs as compiled C (`norms.native`, when a C compiler is there;
the Function otherwise and under torchrun's synchronized statistics). On a GPU the same sum is cheaper as two of
cuDNN's batch-norm kernels (`forward_kernels`: BN with gain gamma*rho plus IN, i.e. BN over (1, N*C) channels, with
gain gamma*(1-rho)): 2.6-2.7x nn.BatchNorm2d on an H100 against 6.6-7.5x for an earlier version of the Function (90
kernels per forward and backward; 51 now). The gate `rho` starts at 1 (pure BN) and is kept in [0, 1] by
`clamp_gate_()`, which the trainer calls after every optimizer step. `gate_lr_mult` declares the gate's
learning-rate multiplier (10 in the official code); the optimizer builder reads it.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.collectives import sync_world
from normlab.norms import native
from normlab.norms.batch import update_running_stats_
from normlab.norms.fused import (
    STATS,
    bn_statistics,
    centred_input_grad,
    grad_sums,
    row_statistics,
    scale_shift,
    statistics_backward,
)
from normlab.norms.registry import register_norm


class BatchInstanceNormFunction(torch.autograd.Function):
    """x (N, C, M) -> y, and the BN statistics (2, C) (mean; biased variance) in x's dtype, for the running ones.

    With `batch_stats` the BN moments are the batch's (over every rank's batch when `world` > 1), else the given
    running ones. y = sum_k c_k (x - mean_k) + beta over the kinds k = BN, IN with c_k = w g_k s_k, gate shares
    g = (rho, 1 - rho) and inverse deviations s_k = 1 / sqrt(var_k + eps), computed as d * A + B' on the
    centred input d = x - shift (see `norms.fused`): A = sum_k c_k, B' = beta + sum_k c_k (shift - mean_k)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # amp=true: in float32
    def forward(ctx, x, gate, weight, bias, running_mean, running_var, eps, batch_stats, world):
        n, c = x.shape[:2]
        d, shift, rows = row_statistics(x)  # rows: (2, N, C) float64
        bn = bn_statistics(rows, running_mean, running_var, batch_stats, world)
        stats = torch.stack([bn.expand(2, n, c), rows], 1)  # (2, 2, N, C): BN; IN
        inv_std = (stats[1] + eps).rsqrt_()  # (2, N, C): s_bn; s_in
        shares = torch.stack([gate, 1 - gate]).to(STATS)  # (2, C)
        w = weight.to(STATS)
        p = shares.view(2, 1, c) * inv_std
        scale = w * p.sum(0)  # (N, C)
        offset = bias.to(STATS) + w * (p * (shift.to(STATS) - stats[0])).sum(0)
        ctx.save_for_backward(d, shift, rows, shares, w, stats, inv_std, p, scale)
        ctx.batch_stats, ctx.world = batch_stats, world
        ctx.set_materialize_grads(False)
        y = scale_shift(d, scale.to(x.dtype).unsqueeze(-1), offset.to(x.dtype).unsqueeze(-1))
        bn_out = bn.view(2, c).to(x.dtype)
        ctx.mark_non_differentiable(bn_out)
        return y, bn_out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad, _stats):
        if grad is None:  # no gradient reached y (grads are not materialized as zeros)
            return (None,) * 9
        d, shift, rows, shares, w, stats, inv_std, p, scale = ctx.saved_tensors
        mean_in = rows[0]
        d_shift, t_in = grad_sums(grad, d, mean_in - shift.to(STATS))  # sum g; sum g (x - mean_in): (N, C)
        st = inv_std * torch.addcmul(t_in, d_shift, mean_in - stats[0])  # s_k sum g (x - mean_k): (2, N, C)
        u = st.sum(1)  # (2, C)
        d_weight, d_gate, d_bias = (shares * u).sum(0), w * (u[0] - u[1]), d_shift.sum(0)
        # gradients of each kind's mean (-w g_k s_k dB) and variance (-w g_k s_k^2 st_k / 2)
        d_stats = torch.stack([d_shift.expand_as(st), st.mul_(inv_std).mul_(0.5)]).mul_(w * p).neg_()
        d_rows = statistics_backward(d_stats, stats, rows, ("bn", "in"), ctx.batch_stats, ctx.world)
        d_x = centred_input_grad(d, shift, rows, d_rows, grad, scale.to(d.dtype).unsqueeze(-1))
        dtype = d.dtype
        return d_x, d_gate.to(dtype), d_weight.to(dtype), d_bias.to(dtype), *[None] * 5


@register_norm("batch_instance", options=("eps", "momentum", "gate_lr_mult"), kinds=("2d",), batch_stats=True)
class BatchInstanceNorm(_BatchNorm):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, gate_lr_mult: float = 10.0):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=True, track_running_stats=True)
        self.gate = nn.Parameter(torch.ones(num_features))
        self.gate_lr_mult = gate_lr_mult
        self.sync = False  # BN statistics over every rank's batch (norm.sync=true under torchrun)
        self.use_native = True  # the compiled CPU kernels where they apply (native.usable)

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
        """The hand-written BatchInstanceNormFunction (CPU, and BN statistics synchronized over `world` ranks),
        or in one process on CPU the same in compiled code (`native.batch_instance_norm`)."""
        n, c = x.shape[:2]
        args = (x.reshape(n, c, -1), self.gate, self.weight, self.bias, self.running_mean, self.running_var)
        if world == 1 and self.use_native and native.usable(*args):  # updates the running statistics itself
            y = native.batch_instance_norm(*args, self.num_batches_tracked, self.eps, self.training, self.momentum)
            return y.view_as(x)
        y, bn = BatchInstanceNormFunction.apply(*args, self.eps, self.training, world)
        if self.training:
            update_running_stats_(self, bn[0], bn[1], x.numel() // c * world)
        return y.view_as(x)

    @torch.no_grad()
    def after_step_(self) -> None:
        """The BIN paper's projection after each step: gates clipped to [0, 1]."""
        self.gate.clamp_(0.0, 1.0)

    def lr_groups(self) -> list[tuple[nn.Parameter, float]]:
        """The gates train at `gate_lr_mult` times the base lr, without weight decay (the official BIN code)."""
        return [(self.gate, self.gate_lr_mult)]

    def histograms(self) -> dict[str, torch.Tensor]:
        return {"gate": self.gate.detach()}

    def internals(self) -> dict[str, float]:
        return {"gate_mean": self.gate.mean().item()}
