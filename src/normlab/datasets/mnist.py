"""MNIST (LeCun et al. 1998) from torchvision's download layout: MNIST/raw/*-ubyte idx files."""

from pathlib import Path

import numpy as np

from normlab.datasets.registry import DataError, check_labels, register_dataset

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """An idx file (MNIST's format): magic (0, 0, 0x08 for uint8, ndim), big-endian int32 dims, data."""
    raw = path.read_bytes()
    header = 4 + 4 * expected_dims
    if len(raw) < header or raw[:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] != expected_dims:
        raise DataError(f"{path} is not an idx file of uint8 with {expected_dims} dims (corrupt or wrong file)")
    dims = np.frombuffer(raw, dtype=">i4", count=expected_dims, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} holds {data.size} values, its header says {tuple(dims)} (truncated or corrupt)")
    return data.reshape(tuple(int(d) for d in dims))


@register_dataset(
    "mnist",
    files=tuple(f"MNIST/raw/{f}" for pair in FILES.values() for f in pair),
    shape=(1, 28, 28),
    num_classes=10,
    train_size=60_000,
    test_size=10_000,
    mean=(0.1307,),
    std=(0.3081,),
    torchvision="MNIST",
)
def load_mnist(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_file, labels_file = FILES[split]
    raw = root / "MNIST" / "raw"
    images = read_idx(raw / images_file, 3)[:, None]  # (N, 1, 28, 28)
    labels = read_idx(raw / labels_file, 1)
    if images.shape[1:] != (1, 28, 28) or len(images) != len(labels):
        raise DataError(f"{raw} holds {images.shape} images and {len(labels)} labels, not MNIST's 28x28 (corrupt?)")
    check_labels(raw / labels_file, labels, 10)
    return images, labels
