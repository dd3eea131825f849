"""Your own data: `dataset=custom dataset._target_=mypkg.make_data` (or `normlab.train(..., data=...)`).

The factory takes no arguments and returns {"train": (images, labels), "test": (images, labels)}: tensors or
arrays, images (N, C, H, W) (or (N, D) features for model=mlp), labels class indices 0..K-1. uint8 images are
scaled to [0, 1]; float images are used as they are (normalize them as you like). The validation split is held
out of "train" as for the built-in datasets (data.val_size)."""

import functools

import numpy as np
import torch

from normlab.datasets.registry import DataError, DatasetSpec
from normlab.targets import import_target


def as_arrays(data, where: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images, labels), "test": (...)} of tensors or arrays -> numpy arrays, checked."""
    if not isinstance(data, dict) or set(data) != {"train", "test"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{where} must give a dict with keys 'train' and 'test', each (images, labels); got {got}")
    arrays = {}
    for split, pair in data.items():
        try:
            images, labels = (p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else np.asarray(p) for p in pair)
        except (TypeError, ValueError):
            raise DataError(f"{where}: {split!r} must be a pair (images, labels)") from None
        if images.ndim < 2 or labels.shape != (len(images),) or not len(images):
            raise DataError(
                f"{where}: {split!r} holds images {images.shape} and labels {labels.shape}; expected "
                "(N, ...) images and (N,) labels, N >= 1"
            )
        if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
            raise DataError(f"{where}: {split!r} images are {images.dtype}; expected uint8 or float")
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise DataError(f"{where}: {split!r} labels must be class indices 0..K-1 (integers >= 0)")
        if images.dtype != np.uint8 and not np.isfinite(images).all():
            first = int(np.flatnonzero(~np.isfinite(images.reshape(len(images), -1)).all(1))[0])
            raise DataError(f"{where}: {split!r} image {first} holds NaN or inf; every value must be finite")
        arrays[split] = (images, labels.astype(np.int64))
    if arrays["train"][0].shape[1:] != arrays["test"][0].shape[1:]:
        raise DataError(
            f"{where}: train images {arrays['train'][0].shape[1:]} and test images "
            f"{arrays['test'][0].shape[1:]} differ in shape"
        )
    classes = int(max(arrays["train"][1].max(), arrays["test"][1].max())) + 1
    unseen = classes - len(np.unique(arrays["train"][1]))
    if unseen:  # a stray label (1_000_000 among 0..9) would make a head of a million classes never trained
        raise DataError(
            f"{where}: the labels reach {classes - 1}, so the model would have {classes} classes, but "
            f"{unseen} of them have no training image; labels must be 0..K-1 with every class in 'train'"
        )
    return arrays


def tensor_spec(data, where: str = "the data") -> DatasetSpec:
    """A DatasetSpec over in-memory tensors, as a registered dataset's (no files, no normalization statistics)."""
    arrays = as_arrays(data, where)
    (train_x, train_y), (_, test_y) = arrays["train"], arrays["test"]
    return DatasetSpec(
        name="custom",
        load=lambda root, split: arrays[split],
        files=(),
        shape=tuple(train_x.shape[1:]),
        num_classes=int(max(train_y.max(), test_y.max())) + 1,
        train_size=len(train_y),
        test_size=len(test_y),
        mean=None,
        std=None,
    )


@functools.lru_cache(maxsize=4)
def target_spec(target: str | None) -> DatasetSpec:
    """The spec of dataset=custom's factory (called once per process: every job of a sweep checks it)."""
    factory = import_target(target, "dataset._target_")
    try:
        data = factory()
    except Exception as e:  # noqa: BLE001 - the user's factory failed: say so in one line
        failure = f"{type(e).__name__}: {e}"
        raise DataError(f"dataset._target_={target} failed when called with no arguments: {failure}") from None
    return tensor_spec(data, f"dataset._target_={target}")
