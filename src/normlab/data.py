"""In-memory datasets: MNIST and CIFAR-10 read straight from torchvision's download layouts into uint8 tensors
on the training device; normalization and augmentation happen per batch with tensor ops (no per-sample
DataLoader). torchvision is used only to download missing files when `data.download=true`."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from normlab.config import ConfigError, DataConfig

DATASETS = ("mnist", "cifar10")

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
# per-channel mean and std of the training images, in [0, 1] units
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
TRAIN_SIZES = {"mnist": 60_000, "cifar10": 50_000}  # images in the official training split
TEST_SIZE = 10_000  # both
VAL_SEED = 0  # the validation images are the same for every run seed: a fixed draw, not the run's
NUM_CLASSES = 10
# Test-set batch size. Not more: on a 2-core CPU the CIFAR-10 CNN evaluates 1.6x faster than in batches of 1000
# (whose activations no longer fit the caches), inception_lite and the LSTM 1.1-1.4x; the MLP the same.
EVAL_BATCH = 500


class DataError(ConfigError):
    """Missing or unreadable dataset files: a user problem, reported in one line."""


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
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


def _load_mnist(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_file, labels_file = MNIST_FILES[split]
    raw = root / "MNIST" / "raw"
    images = _read_idx(raw / images_file, 3)[:, None]  # (N, 1, 28, 28)
    labels = _read_idx(raw / labels_file, 1)
    if images.shape[1:] != (1, 28, 28) or len(images) != len(labels):
        raise DataError(f"{raw} holds {images.shape} images and {len(labels)} labels, not MNIST's 28x28 (corrupt?)")
    check_labels(raw / labels_file, labels)
    return images, labels


def check_labels(path: Path, labels: np.ndarray) -> None:
    """Every label a class index in [0, NUM_CLASSES): a damaged file is named before training starts."""
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if len(bad):
        raise DataError(f"{path} has label {int(labels[bad[0]])} at index {int(bad[0])}, outside 0..{NUM_CLASSES - 1} "
                        "(corrupt file?)")  # fmt: skip


def _load_cifar10(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in CIFAR_FILES[split]:
        path = root / "cifar-10-batches-py" / name
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            if not isinstance(batch, dict) or not isinstance(batch.get("data"), np.ndarray):
                raise TypeError("no 'data' array")
            data, batch_labels = batch["data"], np.asarray(batch["labels"], dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise ValueError(f"'data' is {data.dtype} {data.shape}, not uint8 (N, 3072)")
            if batch_labels.shape != (len(data),):
                raise ValueError(f"{batch_labels.shape} labels for {len(data)} images")
            check_labels(path, batch_labels)
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(batch_labels)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever a damaged pickle raises, it is that file's error
            raise DataError(f"{path} is not a CIFAR-10 python batch (corrupt or wrong file: {e})") from None
    return np.concatenate(images), np.concatenate(labels)


def _expected_files(name: str, root: Path) -> list[Path]:
    if name == "mnist":
        return [root / "MNIST" / "raw" / f for pair in MNIST_FILES.values() for f in pair]
    return [root / "cifar-10-batches-py" / f for files in CIFAR_FILES.values() for f in files]


def _download(name: str, root: Path) -> None:
    """Fetch missing files with torchvision; failures (no network) fall through to the missing-file error."""
    import torchvision

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.CIFAR10
    try:
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except Exception:  # noqa: BLE001 - any failure here is reported as the missing files below
        pass


def load_arrays(name: str, cfg: DataConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits of dataset `name` as uint8 images (N, C, H, W) and int64 labels."""
    root = Path(cfg.root).expanduser()
    missing = [p for p in _expected_files(name, root) if not p.is_file()]
    if missing and cfg.download:
        _download(name, root)
        missing = [p for p in _expected_files(name, root) if not p.is_file()]
    if missing:
        looked_for = ", ".join(p.name for p in missing)
        raise DataError(
            f"{name} not found: missing {looked_for} under {missing[0].parent}; set data.root (or NORMLAB_DATA) "
            f"to a folder holding torchvision's {name} layout, or run with data.download=true and a network"
        )
    load = _load_mnist if name == "mnist" else _load_cifar10
    return {split: load(root, split) for split in ("train", "test")}


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W) on the device
    labels: torch.Tensor  # int64 (N,) on the device


class InMemoryData:
    """Train/validation/test splits held as uint8 tensors on the device; batches are normalized (and augmented)
    on the fly. The validation split is held out of the official training set (`validation_indices`); model
    selection reads it, the test set is only reported.

    The epoch order depends only on (seed, epoch) and the augmentation only on (seed, step), so a resumed run
    draws exactly the batches an uninterrupted one would.
    """

    def __init__(
        self,
        name: str,
        train: Split,
        test: Split,
        augment: bool,
        seed: int,
        device: torch.device,
        channels_last: bool = False,
        val: Split | None = None,
    ):
        self.name, self.train, self.test, self.augment, self.seed, self.device = (
            name,
            train,
            test,
            augment,
            seed,
            device,
        )
        self.val = val if val is not None and len(val.labels) else None  # None: no validation split
        mean, std = STATS[name]
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.shape = SHAPES[name]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.num_classes = NUM_CLASSES

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float().div_(255.0) - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)

    def steps_per_epoch(self, batch_size: int) -> int:
        return len(self.train.labels) // batch_size  # the last incomplete batch is dropped

    def epoch_order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train.labels), generator=g).to(self.device)

    def train_batch(self, order: torch.Tensor, index: int, batch_size: int, step: int, shard=(0, 1)):
        """Batch `index` of the epoch `order`; under data parallelism (shard = (rank, world_size)) this rank's
        contiguous slice of it, augmented exactly as in the whole global batch."""
        rank, world = shard
        local = batch_size // world
        idx = order[index * batch_size : (index + 1) * batch_size][rank * local : (rank + 1) * local]
        # index_select, not images[idx]: on uint8 CPU tensors it is many times faster
        images, labels = self.train.images.index_select(0, idx), self.train.labels.index_select(0, idx)
        if self.augment:
            g = torch.Generator(device=self.device).manual_seed(self.seed * 7919 + step)
            params = crop_flip_params(batch_size, g, self.device)
            images = crop_flip(images, *(p[rank * local : (rank + 1) * local] for p in params))
        return self.normalize(images), labels

    def eval_batches(self, split: str = "test", batch_size: int = EVAL_BATCH, shard=(0, 1)):
        """The "test" or "val" split in batches; with shard = (rank, world_size), this rank's contiguous part."""
        data = getattr(self, split)
        rank, world = shard
        n = len(data.labels)
        start, stop = n * rank // world, n * (rank + 1) // world
        for i in range(start, stop, batch_size):
            j = min(i + batch_size, stop)
            yield self.normalize(data.images[i:j]), data.labels[i:j]


PAD = 4


def crop_flip_params(n: int, generator: torch.Generator, device):
    """Random crop offsets in [0, 2*PAD] and flips for n images."""
    dy = torch.randint(0, 2 * PAD + 1, (n, 1, 1, 1), device=device, generator=generator)
    dx = torch.randint(0, 2 * PAD + 1, (n, 1, 1, 1), device=device, generator=generator)
    flip = torch.rand((n, 1, 1, 1), device=device, generator=generator) < 0.5
    return dy, dx, flip


def crop_flip(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Per-sample crop from the zero-padded image and horizontal flip, for a whole batch at once: one gather
    over each padded channel's flattened pixels, with one (H*W) index per image shared by its channels."""
    n, c, h, w = images.shape
    dev = images.device
    padded = torch.nn.functional.pad(images, (PAD, PAD, PAD, PAD))
    cols = torch.arange(w, device=dev).view(1, 1, w)
    cols = torch.where(flip.view(n, 1, 1), w - 1 - cols, cols) + dx.view(n, 1, 1)
    rows = (torch.arange(h, device=dev).view(1, h, 1) + dy.view(n, 1, 1)) * (w + 2 * PAD)
    index = (rows + cols).view(n, 1, h * w).expand(n, c, h * w)
    return padded.view(n, c, -1).gather(2, index).view(n, c, h, w)


def validation_indices(n: int, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into a training split of n images: `val_size` of them drawn once with VAL_SEED (the
    same images for every run), the rest in their original order (so data.train_subset takes the first N)."""
    held_out = np.random.default_rng(VAL_SEED).permutation(n)[:val_size]
    keep = np.ones(n, dtype=bool)
    keep[held_out] = False
    return np.flatnonzero(keep), np.sort(held_out)


def check_sizes(name: str, cfg: DataConfig) -> None:
    """data.val_size and the subsets must fit the dataset: checked from its known sizes before anything runs
    (every job of a sweep), and the training split again on the loaded arrays."""
    check_split_sizes(name, cfg, TRAIN_SIZES[name])
    if cfg.test_subset is not None and cfg.test_subset > TEST_SIZE:
        raise ConfigError(f"data.test_subset={cfg.test_subset} is not allowed: {name} has {TEST_SIZE} test images; "
                          f"use <= {TEST_SIZE} or null")  # fmt: skip


def check_split_sizes(name: str, cfg: DataConfig, n: int) -> None:
    if cfg.val_size >= n:
        raise ConfigError(f"data.val_size={cfg.val_size} is not allowed: {name} has {n} training images; "
                          "it must leave some for training (0 = no validation split)")  # fmt: skip
    left = n - cfg.val_size
    if cfg.train_subset is not None and cfg.train_subset > left:
        raise ConfigError(
            f"data.train_subset={cfg.train_subset} is not allowed: {name} has {left} training images besides the "
            f"{cfg.val_size} validation ones (data.val_size); use <= {left} or null"
        )


def _tensors(images: np.ndarray, labels: np.ndarray, device: torch.device) -> Split:
    return Split(torch.from_numpy(images.copy()).to(device), torch.from_numpy(labels.astype(np.int64)).to(device))


def build_data(
    name: str, cfg: DataConfig, seed: int, device: torch.device, channels_last: bool = False
) -> InMemoryData:
    arrays = load_arrays(name, cfg)
    images, labels = arrays["train"]
    check_split_sizes(name, cfg, len(labels))
    train_idx, val_idx = validation_indices(len(labels), cfg.val_size)
    train_idx = train_idx[: cfg.train_subset]
    test_images, test_labels = arrays["test"]
    test = slice(None, cfg.test_subset)
    return InMemoryData(
        name,
        _tensors(images[train_idx], labels[train_idx], device),
        _tensors(test_images[test], test_labels[test], device),
        cfg.augment,
        seed,
        device,
        channels_last,
        val=_tensors(images[val_idx], labels[val_idx], device),
    )
