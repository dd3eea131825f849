"""In-memory data: a registered dataset's files (`normlab.datasets`: MNIST, CIFAR-10) or your own tensors, held
as tensors on the training device; normalization and augmentation happen per batch with tensor ops (no
per-sample DataLoader). torchvision is used only to download missing files when `data.download=true`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from normlab.config import Config, ConfigError, DataConfig, cadences
from normlab.datasets import DataError, DatasetSpec, dataset_spec
from normlab.runlog import missing_folders, remove_empty_folders

VAL_SEED = 0  # the validation images are the same for every run seed: a fixed draw, not the run's
# Test-set batch size. Not more: on a 2-core CPU the CIFAR-10 CNN evaluates 1.6x faster than in batches of 1000
# (whose activations no longer fit the caches), inception_lite and the LSTM 1.1-1.4x; the MLP the same.
EVAL_BATCH = 500


def _download(spec: DatasetSpec, root: Path) -> str:
    """Fetch missing files with torchvision; a failure (no network) is returned in a few words for the missing-file
    error, and the folders torchvision made for the files are removed again (a refused run leaves nothing behind)."""
    import torchvision

    assert spec.torchvision is not None  # (load_arrays downloads only what torchvision can)
    made = sorted({p for f in spec.files for p in missing_folders((root / f).parent)}, key=lambda p: -len(p.parts))
    try:
        for train in (True, False):
            getattr(torchvision.datasets, spec.torchvision)(root=str(root), train=train, download=True)
    except Exception as e:  # noqa: BLE001 - any failure here is reported with the missing files
        remove_empty_folders(made)
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:120]
    return ""


def ensure_files(spec: DatasetSpec, cfg: DataConfig) -> Path:
    """The data root holding every file the dataset reads, downloaded first where missing and `data.download`
    allows it; a DataError naming the missing files otherwise (and why a download tried did not fetch them).
    Checked for every job before a command starts."""
    root = Path(cfg.root).expanduser()
    missing = [f for f in spec.files if not (root / f).is_file()]
    failed = _download(spec, root) if missing and cfg.download and spec.torchvision else None
    missing = [f for f in spec.files if not (root / f).is_file()]
    if missing:
        name, first = spec.name, root / missing[0]
        if failed is not None:
            how = f"; a download was tried and did not fetch them ({failed or 'no error'})"
        elif spec.torchvision:
            how = ", or run with data.download=true and a network"
        else:
            how = ""
        raise DataError(
            f"{name} not found: missing {', '.join(Path(f).name for f in missing)} under {first.parent}; set "
            f"data.root (or NORMLAB_DATA) to a folder holding torchvision's {name} layout{how}"
        )
    return root


def load_arrays(dataset: str | DatasetSpec, cfg: DataConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits of a dataset (a registered name or a spec) as images (N, C, H, W) and int64 labels."""
    spec = dataset_spec(dataset) if isinstance(dataset, str) else dataset
    root = ensure_files(spec, cfg)
    arrays = {split: spec.load(root, split) for split in ("train", "test")}
    for split, size in (("train", spec.train_size), ("test", spec.test_size)):
        if len(arrays[split][1]) != size:  # a file cut short with a header that agrees, or another dataset's
            raise DataError(
                f"{spec.name}'s {split} split under {root} holds {len(arrays[split][1])} images, "
                f"not {size}: a truncated or different file; fetch it again"
            )
        classes = np.unique(arrays[split][1])  # (each label's range is checked as the file is read)
        if len(classes) < 2:
            only = int(classes[0]) if len(classes) else "none"
            raise DataError(
                f"{spec.name}'s {split} labels under {root} are impossible: 1 class ({only}) for every image: a "
                "zeroed or different file; fetch it again"
            )
    return arrays


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
        spec: DatasetSpec,
        train: Split,
        test: Split,
        augment: bool,
        seed: int,
        device: torch.device,
        channels_last: bool = False,
        val: Split | None = None,
    ):
        self.train, self.test, self.augment, self.seed, self.device = train, test, augment, seed, device
        self.val = val if val is not None and len(val.labels) else None  # None: no validation split
        per_channel = (1, -1) + (1,) * (len(spec.shape) - 1)
        self.mean = None if spec.mean is None else torch.tensor(spec.mean, device=device).view(per_channel)
        self.std = None if spec.std is None else torch.tensor(spec.std, device=device).view(per_channel)
        self.shape, self.num_classes = spec.shape, spec.num_classes
        self.channels_last = channels_last and len(spec.shape) == 3

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images to [0, 1], then standardized with the dataset's per-channel statistics where it has them."""
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @property
    def val_images(self) -> int:
        return len(self.val.labels) if self.val is not None else 0

    @property
    def test_images(self) -> int:
        return len(self.test.labels)

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

    def eval_batches(self, split: str = "test", batch_size: int = EVAL_BATCH, shard=(0, 1), limit: int | None = None):
        """The "test", "val" or "train" split (its first `limit` images) in batches; with shard = (rank,
        world_size), this rank's contiguous part."""
        data = getattr(self, split)
        rank, world = shard
        n = len(data.labels) if limit is None else min(limit, len(data.labels))
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


def check_config(cfg: Config, spec: DatasetSpec) -> None:
    """What needs the dataset's sizes, checked before anything runs (every job of a sweep): the validation split
    and subsets fit, the batch fits the training images, warm-up is shorter than the run."""
    name, data = cfg.dataset.name, cfg.data
    check_split_sizes(name, data, spec.train_size)
    if data.test_subset is not None and data.test_subset > spec.test_size:
        raise ConfigError(
            f"data.test_subset={data.test_subset} is not allowed: {name} has {spec.test_size} test "
            f"images; use <= {spec.test_size} or null"
        )
    if data.augment and len(spec.shape) != 3:
        raise ConfigError(f"data.augment=true is not allowed: {name}'s samples are {spec.shape}, not (C, H, W) images")
    train_images = data.train_subset or spec.train_size - data.val_size
    if cfg.batch_size > train_images:
        raise ConfigError(
            f"batch_size={cfg.batch_size} is not allowed: the training set has only {train_images} images"
        )
    total = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * (train_images // cfg.batch_size)
    cadences(cfg, total, data.val_size, data.test_subset or spec.test_size)
    if cfg.scheduler.warmup_steps >= total:
        raise ConfigError(
            f"scheduler.warmup_steps={cfg.scheduler.warmup_steps} is not allowed: the run has only "
            f"{total} steps; warm up for fewer, or train longer"
        )


def check_split_sizes(name: str, cfg: DataConfig, n: int) -> None:
    if cfg.val_size >= n:
        raise ConfigError(
            f"data.val_size={cfg.val_size} is not allowed: {name} has {n} training images; "
            "it must leave some for training (0 = no validation split)"
        )
    left = n - cfg.val_size
    if cfg.train_subset is not None and cfg.train_subset > left:
        raise ConfigError(
            f"data.train_subset={cfg.train_subset} is not allowed: {name} has {left} training images besides the "
            f"{cfg.val_size} validation ones (data.val_size); use <= {left} or null"
        )


def _tensors(images: np.ndarray, labels: np.ndarray, device: torch.device) -> Split:
    return Split(torch.from_numpy(images.copy()).to(device), torch.from_numpy(labels.astype(np.int64)).to(device))


def build_data(
    dataset: str | DatasetSpec, cfg: DataConfig, seed: int, device: torch.device, channels_last: bool = False
) -> InMemoryData:
    """The train/validation/test splits of a dataset (a registered name, or a spec: dataset=custom's) on `device`."""
    spec = dataset_spec(dataset) if isinstance(dataset, str) else dataset
    arrays = load_arrays(spec, cfg)
    if not cfg.standardize:  # inputs in [0, 1], as they are (the BN paper's MNIST)
        spec = dataclasses.replace(spec, mean=None, std=None)
    images, labels = arrays["train"]
    check_split_sizes(spec.name, cfg, len(labels))
    train_idx, val_idx = validation_indices(len(labels), cfg.val_size)
    train_idx = train_idx[: cfg.train_subset]
    test_images, test_labels = arrays["test"]
    test = slice(None, cfg.test_subset)
    return InMemoryData(
        spec,
        _tensors(images[train_idx], labels[train_idx], device),
        _tensors(test_images[test], test_labels[test], device),
        cfg.augment,
        seed,
        device,
        channels_last,
        val=_tensors(images[val_idx], labels[val_idx], device),
    )
