"""The in-memory data path against plain per-image code."""

import torch
import torch.nn.functional as F

from normlab.data import PAD, crop_flip, crop_flip_params

from conftest import linked_dataset


def test_crop_flip_is_a_per_image_padded_crop_then_flip():
    """The batched gather gives what torchvision's RandomCrop(padding=4) + RandomHorizontalFlip do per image,
    for the offsets and flips drawn."""
    images = torch.randint(0, 256, (16, 3, 8, 10), dtype=torch.uint8)
    dy, dx, flip = crop_flip_params(16, torch.Generator().manual_seed(0), "cpu")
    assert dy.unique().numel() > 1 and dx.unique().numel() > 1 and 0 < flip.sum() < 16  # cases exercised
    ours = crop_flip(images, dy, dx, flip)
    for i in range(16):
        y, x = dy[i].item(), dx[i].item()
        crop = F.pad(images[i], (PAD, PAD, PAD, PAD))[:, y : y + 8, x : x + 10]
        torch.testing.assert_close(ours[i], crop.flip(-1) if flip[i] else crop, rtol=0, atol=0)


def _data(**data):
    from normlab.data import build_data

    from conftest import compose_config

    cfg = compose_config(*(f"data.{k}={v}" for k, v in data.items()))
    return build_data("mnist", cfg.data, seed=0, device=torch.device("cpu"))


def test_the_validation_split_is_held_out_of_training_and_the_same_for_every_seed():
    import numpy as np

    from normlab.data import load_arrays, validation_indices
    from normlab.datasets import DATASETS

    train, val = validation_indices(DATASETS["mnist"].train_size, 5000)
    assert len(val) == 5000 and len(train) == 55000 and not set(train) & set(val)
    assert (np.diff(train) > 0).all()  # the rest keeps its order: train_subset takes its first N
    again_train, again_val = validation_indices(DATASETS["mnist"].train_size, 5000)
    assert (again_val == val).all() and (again_train == train).all()

    data = _data(val_size=5000, train_subset=1000, test_subset=100)
    images, labels = load_arrays("mnist", data_config())["train"]
    assert torch.equal(data.val.images, torch.from_numpy(images[val]))
    assert torch.equal(data.val.labels, torch.from_numpy(labels[val].astype("int64")))
    assert torch.equal(data.train.images, torch.from_numpy(images[train[:1000]]))
    assert len(data.test.labels) == 100
    # a training image never appears among the validation ones
    flat_val = {bytes(v) for v in data.val.images.reshape(5000, -1).numpy()}
    assert sum(bytes(t) in flat_val for t in data.train.images.reshape(1000, -1).numpy()) <= 2  # MNIST has duplicates
    assert _data(val_size=0, train_subset=100, test_subset=10).val is None


def data_config():
    from conftest import compose_config

    return compose_config().data


def test_split_sizes_that_leave_no_training_images_are_refused_before_loading():
    import pytest

    from normlab.config import ConfigError

    from conftest import compose_config

    for bad, words in (
        ("data.val_size=60000", "data.val_size=60000 is not allowed"),
        ("data.train_subset=56000", "data.train_subset=56000 is not allowed: mnist has 55000 training images"),
        ("data.test_subset=10001", "data.test_subset=10001 is not allowed"),
        ("data.val_size=-1", "data.val_size=-1 is not allowed"),
    ):
        with pytest.raises(ConfigError, match=words):
            compose_config("data.val_size=5000", bad)
    assert compose_config("data.val_size=0", "data.train_subset=60000").data.train_subset == 60000


def _load(tmp_path, name):
    from normlab.config import DataConfig
    from normlab.data import load_arrays

    return load_arrays(name, DataConfig(root=str(tmp_path), download=False))


def test_damaged_data_files_are_named_before_training(tmp_path):
    import pickle

    import numpy as np
    import pytest

    from normlab.data import DataError

    raw = linked_dataset(tmp_path / "m", "mnist")
    labels = (raw / "t10k-labels-idx1-ubyte").read_bytes()
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte").write_bytes(labels[:8] + bytes([12]) + labels[9:])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte has label 12 at index 0, outside 0..9"):
        _load(tmp_path / "m", "mnist")

    folder = linked_dataset(tmp_path / "c", "cifar10")
    original = (folder / "test_batch").read_bytes()
    batch = pickle.loads(original, encoding="latin1")
    cases = {
        "label 10": {**batch, "labels": [10] + list(batch["labels"][1:])},
        "no 'data' array": {**batch, "data": batch["data"].tolist()[:2]},
        "not uint8": {**batch, "data": batch["data"].astype(np.float32)},
        "labels for": {**batch, "labels": batch["labels"][:-1]},
    }
    for words, damaged in cases.items():
        (folder / "test_batch").unlink()
        (folder / "test_batch").write_bytes(pickle.dumps(damaged))
        with pytest.raises(DataError, match=words):
            _load(tmp_path / "c", "cifar10")
    for offset in (2, 40, 80):  # a flipped byte in the pickle's structure
        flipped = bytearray(original)
        flipped[offset] ^= 0xFF
        (folder / "test_batch").unlink()
        (folder / "test_batch").write_bytes(bytes(flipped))
        try:
            _load(tmp_path / "c", "cifar10")  # (a flip inside the pixels is a valid, if different, image)
        except DataError as e:
            assert "test_batch" in str(e)


def test_pixels_are_standardized_by_default_and_in_0_1_with_standardize_false():
    """data.standardize=false gives the pixels as they are in [0, 1] (the BN paper's MNIST); the default subtracts
    MNIST's mean and divides by its std (0.1307, 0.3081)."""
    raw = _data(standardize="false", train_subset=100, test_subset=200, val_size=0)
    std = _data(train_subset=100, test_subset=200, val_size=0)
    (x_raw, _), (x_std, _) = (next(d.eval_batches("test")) for d in (raw, std))
    assert x_raw.min() == 0 and x_raw.max() == 1
    torch.testing.assert_close(x_raw, raw.test.images.float() / 255)
    torch.testing.assert_close(x_std, (x_raw - 0.1307) / 0.3081)
