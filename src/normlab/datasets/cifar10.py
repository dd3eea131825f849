"""CIFAR-10 (Krizhevsky 2009) from torchvision's download layout: cifar-10-batches-py/ pickled batches."""

import pickle
from pathlib import Path

import numpy as np

from normlab.datasets.registry import DataError, check_labels, register_dataset

RECONSTRUCT = np._core.multiarray._reconstruct  # type: ignore[attr-defined]  # NumPy 2 (no stubs for _core)
# the only globals a CIFAR-10 python batch refers to: NumPy rebuilding its uint8 array
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class BatchUnpickler(pickle.Unpickler):
    """pickle restricted to a batch's dict of arrays, lists and strings: any other global (a function a crafted
    file would call) is refused before it is looked up, so reading a data file never runs code."""

    def find_class(self, module: str, name: str):
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which a CIFAR-10 batch never holds")
        return allowed


FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


@register_dataset(
    "cifar10",
    files=tuple(f"cifar-10-batches-py/{f}" for names in FILES.values() for f in names),
    shape=(3, 32, 32),
    num_classes=10,
    train_size=50_000,
    test_size=10_000,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    torchvision="CIFAR10",
)
def load_cifar10(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in FILES[split]:
        path = root / "cifar-10-batches-py" / name
        try:
            with open(path, "rb") as f:
                batch = BatchUnpickler(f, encoding="latin1").load()
            if not isinstance(batch, dict) or not isinstance(batch.get("data"), np.ndarray):
                raise TypeError("no 'data' array")
            data, batch_labels = batch["data"], np.asarray(batch["labels"], dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise ValueError(f"'data' is {data.dtype} {data.shape}, not uint8 (N, 3072)")
            if batch_labels.shape != (len(data),):
                raise ValueError(f"{batch_labels.shape} labels for {len(data)} images")
            check_labels(path, batch_labels, 10)
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(batch_labels)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever a damaged pickle raises, it is that file's error
            raise DataError(f"{path} is not a CIFAR-10 python batch (corrupt or wrong file: {e})") from None
    return np.concatenate(images), np.concatenate(labels)
