"""The full-size passes shared by the norms that mix instance statistics (BIN, SN), for their hand-written
autograd Functions.

Both layers compute per-(sample, channel) moments of x, derive everything else (BN and LN moments, gates,
importance weights) on small (N, C) tensors, and end in y = x * A + B. Their backward needs, per (sample,
channel), the sums of the upstream gradient and of gradient * x, and ends in dx = g * A + x * a + b. Moments
here are one pass of sums (sum, and sum of squares as a squared 2-norm, which reduces without writing x*x):
`torch.var_mean`'s Welford reduction is several times slower on CPU. Written out by hand, a layer is ~60 small
ops instead of the ~240 autograd records for it.
"""

import torch


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, M) -> mean and biased variance over M, each (N, C, 1): var = E[x^2] - E[x]^2."""
    m = x.shape[-1]
    mean = x.sum(-1, keepdim=True) / m
    var = (torch.linalg.vector_norm(x, 2, -1, keepdim=True).square_() / m - mean * mean).clamp_min(0)
    return mean, var


def moments_backward(x: torch.Tensor, mean: torch.Tensor, d_mean: torch.Tensor, d_var: torch.Tensor) -> torch.Tensor:
    """dx from the gradients of `moments`: d mean/dx = 1/M, d var/dx = 2 (x - mean)/M, in one pass x * a + b."""
    m = x.shape[-1]
    a = d_var * (2.0 / m)
    return torch.addcmul(d_mean / m - a * mean, x, a)


def grad_sums(grad: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (sample, channel) sums over M of the upstream gradient and of gradient * x: the gradients of the
    shift B and the scale A of y = x * A + B."""
    return grad.sum(-1, keepdim=True), torch.linalg.vecdot(grad, x).unsqueeze(-1)
