"""Group Norm (Wu & He 2018) and Layer Norm as its one-group case (Ba et al. 2016), on torch's F.group_norm."""

from torch import nn


def largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of n that is <= at_most (GN needs C divisible by G)."""
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


class GroupNorm(nn.GroupNorm):
    """GN, Eq. (1) with S_i = the C/G channels of i's group; falls back to the largest G' <= G dividing C.

    `requested_groups` keeps what was asked for; `num_groups` is what the layer uses (recorded in summaries).
    """

    def __init__(self, num_features: int, num_groups: int = 32, eps: float = 1e-5):
        # NOTE num_features first, like every normlab norm, so layers swap freely.
        super().__init__(largest_divisor(num_features, num_groups), num_features, eps=eps)
        self.requested_groups = num_groups

    def internals(self) -> dict[str, float]:
        return {"num_groups": self.num_groups}


class LayerNorm(nn.GroupNorm):
    """LN: statistics over all of (C, H, W) per sample, per-channel gain and bias (GN with one group)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__(1, num_features, eps=eps)
