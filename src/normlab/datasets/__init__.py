"""Datasets, one file each registering its loader (`datasets.registry`), and `dataset=custom` for your own
tensors (`datasets.custom`). A new dataset is one file that decorates its loader with
`@register_dataset("name", ...)` plus one import line here."""

from normlab.datasets import cifar10, mnist  # noqa: F401, I001 - they register mnist and cifar10
from normlab.datasets.custom import target_spec, tensor_spec
from normlab.datasets.registry import DATASETS, DataError, DatasetSpec, register_dataset  # first: they register

__all__ = ["CUSTOM", "DATASETS", "DataError", "DatasetSpec", "dataset_spec", "register_dataset", "tensor_spec"]

CUSTOM = "custom"  # dataset=custom: the tensors of dataset._target_'s factory, or the data given to normlab.train


def dataset_spec(name: str, target: str | None = None, data=None) -> DatasetSpec:
    """The spec of `dataset=<name>`; for custom, of `data` (given in Python) or else of the factory `target`."""
    if data is not None and name != CUSTOM:
        raise DataError(
            f"data is only taken with dataset=custom, not dataset={name}: drop the dataset= override "
            f"to train on the data you pass, or drop data= to train on {name}"
        )
    if name == CUSTOM:
        return tensor_spec(data) if data is not None else target_spec(target)
    if name not in DATASETS:
        raise DataError(f"dataset={name!r} is not allowed; choose from {[*DATASETS, CUSTOM]}")
    return DATASETS[name]
