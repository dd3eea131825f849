"""The passes shared by the norms that mix instance statistics (BIN, SN), for their hand-written autograd Functions.

Both layers take per-(sample, channel) raw moments of x (E[x], E[x^2]: one pass of sums), derive the LN (over C)
and BN (over N) moments from them, and end in y = x * A + B with A, B per (sample, channel). The statistics of all
kinds are stacked in one (2, K, N, C) tensor (means; biased variances) so that the mixing and its backward are a
few ops on it rather than a few per kind: at small batches each small op (~1.5 us from Python) costs more than
the full-size passes. Their backward needs, per (sample, channel), the sums of the upstream gradient and of
gradient * (x - E[x]), and ends in dx = g * A + x * a + b.
"""

import functools

import torch

from normlab.distributed import sum_over_ranks_


def raw_moments(x: torch.Tensor) -> torch.Tensor:
    """(N, C, M) -> (2, N, C): E[x] and E[x^2] over M, the sum of squares as a squared 2-norm (one reduction,
    no x*x written; `torch.var_mean`'s Welford reduction is several times slower on CPU)."""
    m = x.shape[-1]
    return torch.stack([x.sum(-1), torch.linalg.vector_norm(x, 2, -1).square_()]).div_(m)


def bn_moments(
    raw: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, batch_stats: bool, world: int
) -> torch.Tensor:
    """BN's entry for `stacked_statistics`, (2, 1, C): with `batch_stats` the raw moments over the batch (every
    rank's when `world` > 1) from the per-sample ones `raw` (2, N, C); else the running (mean; variance), which
    `stacked_statistics` takes as its `central` entry."""
    if not batch_stats:
        return torch.stack([running_mean, running_var]).view(2, 1, -1)
    return sum_over_ranks_(raw.sum(1, keepdim=True), world).div_(raw.shape[1] * world)


def stacked_statistics(raw: list[torch.Tensor], n: int, c: int, central: int | None = None) -> torch.Tensor:
    """K raw moments, each (2, N or 1, C or 1) -> (2, K, N, C): means, and biased variances E[x^2] - E[x]^2.
    The entry at index `central`, if given, is already (mean; variance): running statistics."""
    stats = torch.stack([r.expand(2, n, c) for r in raw], 1)
    stats[1].addcmul_(stats[0], stats[0], value=-1).clamp_(min=0)
    if central is not None:
        stats[:, central] = raw[central]
    return stats


def statistics_backward(
    d_stats: torch.Tensor, stats: torch.Tensor, kinds: tuple[str, ...], batch_stats: bool, world: int
) -> torch.Tensor:
    """Gradients of the stacked statistics of `kinds` ("in", "ln", "bn"; (2, K, N, C)) -> gradients of the
    instance raw moments (2, N, C), from which the LN moments (mean over C) and BN moments (mean over N and every
    rank) derive. BN terms only with `batch_stats` (else they are running statistics, constants). Overwrites
    d_stats."""
    d_stats[0].addcmul_(stats[0], d_stats[1], value=-2)  # d var/d E[x] = -2 E[x]: now w.r.t. raw moments
    n = stats.shape[2]
    terms = []
    for k, kind in enumerate(kinds):
        if kind == "in":
            terms.append(d_stats[:, k])
        elif kind == "ln":
            terms.append(d_stats[:, k].mean(2, keepdim=True))
        elif batch_stats:
            terms.append(sum_over_ranks_(d_stats[:, k].sum(1, keepdim=True), world).div_(n * world))
    return functools.reduce(torch.add, terms)  # not sum(): its start 0 is one more op per backward


def raw_moments_backward(x: torch.Tensor, d_raw: torch.Tensor, grad: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """dx of y = x * scale + (terms in the raw moments of x): grad * scale + d E[x] / M + d E[x^2] * 2x / M."""
    m = x.shape[-1]
    return scale_shift(x, d_raw[1].unsqueeze(-1) * (2.0 / m), d_raw[0].unsqueeze(-1) / m).addcmul_(grad, scale)


def scale_shift(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x * scale + shift with (N, C, 1) scale and shift, as two vectorized passes: torch.addcmul with two broadcast
    operands leaves TensorIterator's vectorized CPU loop and is 2-4x slower than both passes together."""
    return (x * scale).add_(shift)


def grad_sums(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (sample, channel) sums over M of the upstream gradient and of gradient * (x - mean), each (N, C): with
    them the gradients of the shift B and the scale A of y = x * A + B. One pass of torch's batch-norm backward
    over x viewed as (1, N * C, M) with unit inverse deviations (a sum and a dot product written as two ops
    allocate g * x: 1.7-4x slower at batch 32-128 on CPU)."""
    n, c, m = x.shape
    _, centered, total = torch.ops.aten.native_batch_norm_backward(
        grad.reshape(1, n * c, m),
        x.reshape(1, n * c, m),
        None,
        None,
        None,
        mean.reshape(n * c),
        torch.ones(n * c, dtype=x.dtype, device=x.device),
        True,
        0.0,
        [False, True, True],
    )
    return total.view(n, c), centered.view(n, c)
