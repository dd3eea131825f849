"""The passes shared by the norms that mix instance statistics (BIN, SN), for their hand-written autograd Functions.

Exact in float32 on awkward inputs (large means, constant channels, 1x1 maps), as the compiled kernels are:

- Each row (sample, channel) is centred on a shift, its mean rounded to the input's dtype: d = x - shift is exact
  where x is near the mean (Sterbenz), so the moments of d carry no cancellation, unlike E[x^2] - E[x]^2.
- The (N, C) statistics are float64 (cheap: they are small): per-row mean and biased variance, and from them the
  LN (over C) and BN (over N) ones by the law of total variance, var = mean(var_row + (mean_row - mean)^2).
- The output is normalized-then-affine, y = d * A + B' with B' = beta + sum_k c_k (shift - mean_k) in float64, so
  a statistic over one value (IN at 1x1) contributes exactly 0, and x * A is never formed at the input's scale.
- The backward is centred the same way: dx = g * A + d * e2 + e1, with the statistics' gradients carried to the
  per-row mean and variance (not to E[x], E[x^2]).

Statistics of all kinds are stacked in one (2, K, N, C) tensor (means; biased variances) so that the mixing and its
backward are a few ops on it rather than a few per kind: at small batches each small op (~1.5 us from Python)
costs more than the full-size passes.
"""

import functools
from collections.abc import Callable

import torch

from normlab.collectives import sum_over_ranks_

STATS = torch.float64  # dtype of the (N, C) statistics and coefficients


def row_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (N, C, M) -> d = x - shift (x's dtype and layout), shift (N, C) in x's dtype, and the rows' (mean;
    biased variance) (2, N, C) in float64, from the moments of d (its sum of squares as a squared 2-norm: one
    reduction, no d*d written)."""
    m = x.shape[-1]
    shift = x.sum(-1).div_(m)
    d = x - shift.unsqueeze(-1)
    m1 = d.sum(-1).to(STATS).div_(m)  # the mean of d: what the shift missed
    m2 = torch.linalg.vector_norm(d, 2, -1).to(STATS).square_().div_(m)
    return d, shift, torch.stack([m1 + shift.to(STATS), m2.sub_(m1 * m1).clamp_(min=0)])


def pooled(rows: torch.Tensor, dim: int, total: Callable | None = None, count: int | None = None) -> torch.Tensor:
    """(mean; variance) over `dim` of groups of rows (2, N, C), by the law of total variance -> (2, 1, C) or
    (2, N, 1). `total`: a function summing over ranks (BN under sync), with `count` rows in all."""
    total = total or (lambda t: t)
    count = count or rows.shape[dim + 1]
    mean = total(rows[0].sum(dim, keepdim=True)).div_(count)
    spread = (rows[0] - mean).square_().add_(rows[1])
    return torch.stack([mean, total(spread.sum(dim, keepdim=True)).div_(count)])


def bn_statistics(
    rows: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, batch_stats: bool, world: int
) -> torch.Tensor:
    """BN's (mean; biased variance) (2, 1, C): with `batch_stats` over the batch's rows (every rank's when `world` >
    1: two all-reduces, the mean first), else the running ones."""
    if not batch_stats:
        return torch.stack([running_mean, running_var]).to(STATS).view(2, 1, -1)
    return pooled(rows, 0, functools.partial(sum_over_ranks_, world=world), rows.shape[1] * world)


def statistics_backward(
    d_stats: torch.Tensor,
    stats: torch.Tensor,
    rows: torch.Tensor,
    kinds: tuple[str, ...],
    batch_stats: bool,
    world: int,
) -> torch.Tensor:
    """Gradients of the stacked statistics (2, K, N, C) of `kinds` ("in", "ln", "bn"), each cell a contribution to
    its kind's (mean; variance) -> gradients of the rows' (mean; variance) (2, N, C). A pooled statistic over R rows
    passes d mean / R + 2 d var (mean_row - mean) / R to each row's mean and d var / R to its variance. BN terms only
    with `batch_stats` (else running statistics, constants)."""
    n, c = rows.shape[1:]
    terms = []
    for k, kind in enumerate(kinds):
        if kind == "in":
            terms.append(d_stats[:, k])
            continue
        if kind == "bn" and not batch_stats:
            continue
        dim, count = (1, c) if kind == "ln" else (0, n * world)
        total = d_stats[:, k].sum(dim + 1, keepdim=True)
        if kind == "bn":
            total = sum_over_ranks_(total, world)
        total = total.div_(count)
        d_mean = torch.addcmul(total[0], rows[0] - stats[0, k], total[1], value=2)
        terms.append(torch.stack([d_mean, total[1].expand_as(d_mean)]))
    return functools.reduce(torch.add, terms)  # not sum(): its start 0 is one more op per backward


def centred_input_grad(
    d: torch.Tensor, shift: torch.Tensor, rows: torch.Tensor, d_rows: torch.Tensor, grad: torch.Tensor, scale
) -> torch.Tensor:
    """dx of y = d * scale + (terms in the rows' mean and variance): grad * scale + (x - mean_row) * 2 d var / M +
    d mean / M, with x - mean_row = d - (mean_row - shift) (the coefficients in float64, then x's dtype)."""
    m = d.shape[-1]
    e2 = d_rows[1] * (2.0 / m)
    e1 = d_rows[0] / m - e2 * (rows[0] - shift.to(STATS))
    return scale_shift(d, e2.to(d.dtype).unsqueeze(-1), e1.to(d.dtype).unsqueeze(-1)).addcmul_(grad, scale)


def scale_shift(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x * scale + shift with (N, C, 1) scale and shift, as two vectorized passes: torch.addcmul with two broadcast
    operands leaves TensorIterator's vectorized CPU loop and is 2-4x slower than both passes together."""
    return (x * scale).add_(shift)


def grad_sums(grad: torch.Tensor, d: torch.Tensor, centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (sample, channel) sums over M of the upstream gradient and of gradient * (d - centre), each (N, C) in
    float64: with them the gradients of the shift B and the scale A of y = d * A + B. One pass of torch's
    batch-norm backward over d viewed as (1, N * C, M) with unit inverse deviations (a sum and a dot product
    written as two ops allocate g * d: 1.7-4x slower at batch 32-128 on CPU)."""
    n, c, m = d.shape
    ones = torch.ones(n * c, dtype=d.dtype, device=d.device)
    _, centered, total = torch.ops.aten.native_batch_norm_backward(
        grad.reshape(1, n * c, m),
        d.reshape(1, n * c, m),
        ones,  # the weight: no factor in these sums, and CUDA's kernel needs one where CPU's takes None
        None,
        None,
        centre.to(d.dtype).reshape(n * c),
        ones,
        True,
        0.0,
        [False, True, True],
    )
    return total.view(n, c).to(STATS), centered.view(n, c).to(STATS)
