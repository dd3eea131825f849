"""Model and data factories for the tests of model=custom and dataset=custom (named by import path, as a user's
would be: tests/ is on sys.path under pytest)."""

import torch
from torch import nn


def small_net(num_classes: int, in_shape: tuple[int, ...]) -> nn.Module:
    """A user's conv net with torch's BatchNorm2d in it (normlab swaps them)."""
    c = in_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def feature_net(num_classes: int) -> nn.Module:
    """A user's MLP on (N, D) features with BatchNorm1d and a LayerNorm over its features."""
    return nn.Sequential(
        nn.Flatten(),
        nn.LazyLinear(32),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Linear(32, 16),
        nn.LayerNorm(16),
        nn.ReLU(),
        nn.Linear(16, num_classes),
    )


def blobs(n: int = 400, classes: int = 3, dim: int = 12, seed: int = 0) -> dict:
    """Separable Gaussian blobs as (N, D) float features: a dataset=custom whose classes a net learns in a few
    dozen steps."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(classes, dim, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    x = centres[labels] + torch.randn(n, dim, generator=g)
    return {"train": (x[: n * 3 // 4], labels[: n * 3 // 4]), "test": (x[n * 3 // 4 :], labels[n * 3 // 4 :])}


def images(n: int = 300, classes: int = 4, seed: int = 0) -> dict:
    """uint8 3x16x16 images whose class sets a bright quadrant: a dataset=custom of images."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    x = torch.randint(0, 100, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    for k in range(classes):
        r, c = divmod(k, 2)
        x[labels == k, :, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] += 150
    return {"train": (x[:200], labels[:200]), "test": (x[200:], labels[200:])}


def plain_net(num_classes: int) -> nn.Module:
    """A user's MLP with no norm layer: a norm has nothing to replace in it."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, num_classes))


def short_head(num_classes: int) -> nn.Module:
    """A user's net with fewer outputs than the data has classes."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
