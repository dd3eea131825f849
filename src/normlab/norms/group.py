"""Group Norm (Wu & He 2018) and Layer Norm as its one-group case (Ba et al. 2016), on torch's F.group_norm.

Both run torch's kernel on x minus a per-(sample, group) shift, the group's first value (detached: GN is exactly
invariant to it, so neither output nor gradient changes in exact arithmetic). Without it torch's float32 kernels
lose precision at large means, and its CPU channels_last kernel badly so: ~1e3 off for inputs of mean 1e4 and
std 1, where the contiguous kernel is 5e-4 off and the shifted one a few ulps, on either layout.
"""

import torch
import torch.nn.functional as F
from torch import nn

from normlab.config import ConfigError
from normlab.norms.registry import register_norm

GROUP_SIZE = 4  # default channels per group: several in every layer of normlab's models (16-channel layers: 4 groups)


def groups_for(channels: int, num_groups: int | None = None, group_size: int = GROUP_SIZE) -> int:
    """GN's number of groups in a layer of `channels`: `num_groups` where given, else channels / `group_size`.
    Never silently another norm: a layer where that leaves one channel per group (Instance Norm), one group (Layer
    Norm) or does not divide C is refused with a ConfigError that says what would fit."""
    asked = f"norm.num_groups={num_groups}" if num_groups else f"norm.group_size={group_size}"
    groups = num_groups if num_groups else channels // group_size
    divides = channels % (num_groups or group_size) == 0
    fits = [g for g in range(2, channels // 2 + 1) if channels % g == 0]
    hint = f"num_groups from {fits} or a group_size dividing {channels}" if fits else "another norm"
    if not divides or groups < 2 or channels // groups < 2:
        what = (
            "does not divide its channels"
            if not divides
            else "would make it Layer Norm (1 group)"
            if groups < 2
            else "would make it Instance Norm (1 channel per group)"
        )
        raise ConfigError(
            f"{asked} is not allowed for a layer of {channels} channels: it {what}; GN needs >= 2 "
            f"groups of >= 2 channels (use {hint})"
        )
    return groups


def shifted(x: torch.Tensor, groups: int) -> torch.Tensor:
    """x minus its first value per (sample, group of C / groups channels), detached; keeps x's memory layout."""
    per_group = x.shape[1] // groups
    first = x.detach()[(slice(None), slice(None, None, per_group)) + (slice(0, 1),) * (x.dim() - 2)]
    return x - first.repeat_interleave(per_group, dim=1)


@register_norm("layer", options=("eps",))
class LayerNorm(nn.GroupNorm):
    """LN: statistics over all of (C, H, W) per sample, per-channel gain and bias (GN with one group)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__(1, num_features, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(shifted(x, 1), 1, self.weight, self.bias, self.eps)


@register_norm("group", options=("eps", "num_groups", "group_size"))
class GroupNorm(nn.GroupNorm):
    """GN, Eq. (1) with S_i = the C/G channels of i's group: G = `num_groups` where given (the paper's G = 32 on
    ResNet-50), else C / `group_size` channels per group (the paper's Table 3 alternative; normlab's small nets
    have 16-128 channels). `num_groups` and channels per group are recorded in summaries (norm_layers)."""

    def __init__(
        self, num_features: int, num_groups: int | None = None, group_size: int = GROUP_SIZE, eps: float = 1e-5
    ):
        # NOTE num_features first, like every normlab norm, so layers swap freely.
        super().__init__(groups_for(num_features, num_groups, group_size), num_features, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(shifted(x, self.num_groups), self.num_groups, self.weight, self.bias, self.eps)

    def internals(self) -> dict[str, float]:
        return {"num_groups": self.num_groups, "channels_per_group": self.num_channels // self.num_groups}


def groups_per_layer(model: nn.Module) -> list[int]:
    """GN's number of groups in each of `model`'s GN layers, in order (what a run's start line reports)."""
    return [m.num_groups for m in model.modules() if isinstance(m, GroupNorm)]
