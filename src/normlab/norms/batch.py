"""Batch Norm (Ioffe & Szegedy 2015, Alg. 1): torch's own fused modules, built by feature kind, plus the
synchronized variant for data-parallel training on CPU (torch's nn.SyncBatchNorm runs only on GPUs)."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.collectives import batch_moments
from normlab.norms.registry import register_norm


@register_norm("batch", options=("eps", "momentum", "bn_stats"), batch_stats=True)
def batch_norm(
    num_features: int, kind: str = "2d", eps: float = 1e-5, momentum: float = 0.1, bn_stats: str = "moving"
) -> nn.Module:
    """Batch statistics in training; running mean and unbiased running variance at eval, as torch does, or with
    bn_stats="batch_average" their plain average over training batches (`norms.population`)."""
    cls = nn.BatchNorm2d if kind == "2d" else nn.BatchNorm1d
    layer = cls(num_features, eps=eps, momentum=momentum)
    layer.bn_stats = bn_stats
    return layer


@torch.no_grad()
def update_running_stats_(layer: _BatchNorm, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """Running mean and unbiased running variance from a batch's mean and biased variance over `count` values
    per channel, with torch's momentum convention, as F.batch_norm keeps them."""
    layer.running_mean.lerp_(mean, layer.momentum)
    layer.running_var.lerp_(var * (count / max(count - 1, 1)), layer.momentum)
    layer.num_batches_tracked.add_(1)


def normalize_with_batch_stats(layer: _BatchNorm, x: torch.Tensor, sync: bool) -> torch.Tensor:
    """x_hat = (x - mu_B) / sqrt(var_B + eps) with the statistics of the whole (global, when `sync`) batch,
    updating the layer's running mean and unbiased running variance as F.batch_norm does."""
    mean, var, count = batch_moments(x, [0, *range(2, x.dim())], sync)
    update_running_stats_(layer, mean, var, count)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + layer.eps)


class SyncedBatchNorm(_BatchNorm):
    """BN whose training statistics are those of the global batch across all ranks (all-reduced moments)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"expected 2D or 4D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return normalize_with_batch_stats(self, x, sync=True) * self.weight.view(shape) + self.bias.view(shape)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every nn.BatchNorm1d/2d in `module` by a SyncedBatchNorm with the same parameters and buffers."""
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            synced = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            synced.bn_stats = getattr(module, "bn_stats", "moving")
            synced.load_state_dict(module.state_dict())
            return synced.to(module.weight.device)
        for name, child in module.named_children():
            setattr(module, name, cls.convert(child))
        return module


# batch_noisy's noise (Santurkar et al. 2018 give no numbers in the text; ours): each channel's output y becomes
# y * s + m, s ~ U(1, NOISE_SCALE), m ~ U(-NOISE_SHIFT, NOISE_SHIFT), drawn afresh at every training step
NOISE_SHIFT = 1.0
NOISE_SCALE = 2.0


def step_noise(y: torch.Tensor, training: bool, shift: float = NOISE_SHIFT, scale: float = NOISE_SCALE) -> torch.Tensor:
    """Noise whose distribution changes every step (Santurkar et al. 2018, Sec. 2.1, Fig. 2: "noisy BatchNorm"): in
    training each channel of `y` becomes y * s + m, with s and m drawn afresh at every call and shared by the batch,
    so the next layer's input distribution moves from step to step however stable BN keeps it. At eval:
    y * E[s] + E[m]."""
    if not training:
        return y * ((1 + scale) / 2)
    shape = (1, -1) + (1,) * (y.dim() - 2)
    u = torch.rand(2, y.shape[1], device=y.device, dtype=y.dtype)
    return y * (1 + (scale - 1) * u[0]).view(shape) + (shift * (2 * u[1] - 1)).view(shape)


class NoisyBatchNorm1d(nn.BatchNorm1d):
    """BN on (N, C) features, then `step_noise`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return step_noise(super().forward(x), self.training)


class NoisyBatchNorm2d(nn.BatchNorm2d):
    """BN on (N, C, H, W) activations, then `step_noise`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return step_noise(super().forward(x), self.training)


@register_norm("batch_noisy", options=("eps", "momentum"), batch_stats=True)
def noisy_batch_norm(num_features: int, kind: str = "2d", eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    """BN (running statistics at eval) with `step_noise` after it (norm.sync=true is refused: no synced form)."""
    layer = (NoisyBatchNorm2d if kind == "2d" else NoisyBatchNorm1d)(num_features, eps=eps, momentum=momentum)
    layer.bn_stats = "moving"
    return layer
