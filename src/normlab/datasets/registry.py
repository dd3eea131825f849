"""The dataset registry: a name maps to its loader and what normlab must know before loading it (image shape,
classes, split sizes, normalization statistics, files). A dataset registers itself in its own file with
`@register_dataset(...)`; `dataset=<name>`, the config checks and `build_data` read this table."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from normlab.config import ConfigError


class DataError(ConfigError):
    """Missing or unreadable dataset files: a user problem, reported in one line."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    load: Callable[[Path, str], tuple[np.ndarray, np.ndarray]]  # (root, "train"|"test") -> uint8 images, labels
    files: tuple[str, ...]  # the files `load` reads, relative to the data root
    shape: tuple[int, ...]  # (C, H, W) of an image
    num_classes: int
    train_size: int  # images in the official training split (the validation split is held out of these)
    test_size: int
    mean: tuple[float, ...] | None  # per-channel mean and std of the training images in [0, 1] units (None: the
    std: tuple[float, ...] | None  # images are used as they are, uint8 ones scaled to [0, 1])
    torchvision: str | None = None  # the torchvision.datasets class that downloads it, where one does


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, **spec):
    """Decorator for a loader `load(root, split)` -> (uint8 images (N, C, H, W), int labels (N,)); `spec` gives
    the other DatasetSpec fields."""

    def register(load):
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = DatasetSpec(name=name, load=load, **spec)
        return load

    return register


def check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    """Every label a class index in [0, num_classes): a damaged file is named before training starts."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DataError(
            f"{path} has label {int(labels[bad[0]])} at index {int(bad[0])}, outside 0..{num_classes - 1} "
            "(corrupt file?)"
        )
