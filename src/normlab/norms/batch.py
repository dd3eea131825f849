"""Batch Norm (Ioffe & Szegedy 2015, Alg. 1): torch's own fused modules, built by feature kind."""

from torch import nn


def batch_norm(num_features: int, kind: str = "2d", eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    """Batch statistics in training; running mean and unbiased running variance at eval, as torch does."""
    cls = nn.BatchNorm2d if kind == "2d" else nn.BatchNorm1d
    return cls(num_features, eps=eps, momentum=momentum)
