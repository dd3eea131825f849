"""The two full-size passes of the norms that mix instance statistics (BIN, SN), with hand-written backwards.

Both layers compute per-(sample, channel) moments of x, derive everything else (BN and LN moments, gates,
importance weights) on small (N, C) tensors, and end in y = x * A + B. Left to autograd, the moments
(`torch.var_mean`, a slow Welford reduction on CPU) and their backward cost several full-size passes each;
here the moments are one pass of sums (sum and sum of squares), and each backward is one or two fused passes,
as in torch's own batch-norm kernels. The small tensors in between stay with autograd.
"""

import torch


class InstanceMoments(torch.autograd.Function):
    """(N, C, M) -> mean and biased variance over M, each (N, C, 1): var = E[x^2] - E[x]^2."""

    @staticmethod
    def forward(ctx, x: torch.Tensor):
        m = x.shape[-1]
        mean = x.sum(-1, keepdim=True) / m
        var = (torch.linalg.vecdot(x, x).unsqueeze(-1) / m - mean * mean).clamp_min(0)
        ctx.save_for_backward(x, mean)
        return mean, var

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor, grad_var: torch.Tensor) -> torch.Tensor:
        # d mean / dx = 1/M;  d var / dx = 2 (x - mean) / M: one pass, dx = x * a + b
        x, mean = ctx.saved_tensors
        m = x.shape[-1]
        a = grad_var * (2.0 / m)
        return torch.addcmul(grad_mean / m - a * mean, x, a)


class ScaleShift(torch.autograd.Function):
    """y = x * scale + shift for x (N, C, M) and scale, shift broadcastable to (N, C, 1)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, scale)
        ctx.shift_shape = shift.shape
        return torch.addcmul(shift, x, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, scale = ctx.saved_tensors
        grad_scale = torch.linalg.vecdot(grad, x).unsqueeze(-1).sum_to_size(scale.shape)
        grad_shift = grad.sum(-1, keepdim=True).sum_to_size(ctx.shift_shape)
        return grad * scale, grad_scale, grad_shift


instance_moments = InstanceMoments.apply
scale_shift = ScaleShift.apply
