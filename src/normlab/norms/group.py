"""Group Norm (Wu & He 2018) and Layer Norm as its one-group case (Ba et al. 2016), on torch's F.group_norm.

Both run torch's kernel on x minus a per-(sample, group) shift, the group's first value (detached: GN is exactly
invariant to it, so neither output nor gradient changes in exact arithmetic). Without it torch's float32 kernels
lose precision at large means, and its CPU channels_last kernel badly so: ~1e3 off for inputs of mean 1e4 and
std 1, where the contiguous kernel is 5e-4 off and the shifted one a few ulps, on either layout.
"""

import torch
import torch.nn.functional as F
from torch import nn


def largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of n that is <= at_most (GN needs C divisible by G)."""
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def shifted(x: torch.Tensor, groups: int) -> torch.Tensor:
    """x minus its first value per (sample, group of C / groups channels), detached; keeps x's memory layout."""
    per_group = x.shape[1] // groups
    first = x.detach()[(slice(None), slice(None, None, per_group)) + (slice(0, 1),) * (x.dim() - 2)]
    return x - first.repeat_interleave(per_group, dim=1)


class GroupNorm(nn.GroupNorm):
    """GN, Eq. (1) with S_i = the C/G channels of i's group; falls back to the largest G' <= G dividing C.

    `requested_groups` keeps what was asked for; `num_groups` is what the layer uses (recorded in summaries).
    """

    def __init__(self, num_features: int, num_groups: int = 32, eps: float = 1e-5):
        # NOTE num_features first, like every normlab norm, so layers swap freely.
        super().__init__(largest_divisor(num_features, num_groups), num_features, eps=eps)
        self.requested_groups = num_groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(shifted(x, self.num_groups), self.num_groups, self.weight, self.bias, self.eps)

    def internals(self) -> dict[str, float]:
        return {"num_groups": self.num_groups}


class LayerNorm(nn.GroupNorm):
    """LN: statistics over all of (C, H, W) per sample, per-channel gain and bias (GN with one group)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__(1, num_features, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(shifted(x, 1), 1, self.weight, self.bias, self.eps)
