"""Every check of a run's config in one call, before anything is created: the values themselves
(`config.validate`), then what needs a registry, where the registry is (`data.check_config` for the dataset's
sizes, `models.check_config` for models and norms)."""

from typing import Any

from normlab.config import Config, config_from_dict
from normlab.data import check_config as check_data
from normlab.datasets import DatasetSpec, dataset_spec
from normlab.models import check_config as check_model


def check(cfg: Config, data=None, model=None) -> DatasetSpec:
    """Raise ConfigError for a run that cannot be made; return its dataset's spec. `data`, `model`: the objects
    given to `normlab.train` for dataset=custom and model=custom."""
    spec = dataset_spec(cfg.dataset.name, cfg.dataset.target, data)
    check_data(cfg, spec)
    check_model(cfg, spec.shape, spec.num_classes, model)
    return spec


def check_model_keys(values: dict[str, Any]) -> None:
    """Every model.* key given is one the chosen model reads (its registry entry's `options`): a key added for
    another model (`+model.width=64` on the MLP) would be accepted and silently ignored."""
    from normlab.config import ConfigError
    from normlab.models import MODELS

    model = values.get("model")
    if not isinstance(model, dict) or model.get("name") not in MODELS:
        return  # a wrong type or name: config_from_dict and the model checks say so
    name, options = model["name"], MODELS[model["name"]].options
    for key, value in model.items():
        if key not in ("name", "_target_", *options):
            raise ConfigError(f"model.{key}={value} is not allowed for model={name}: it does not read it (model={name} "
                              f"reads {', '.join(options) or 'no other key'})")  # fmt: skip


def load_config(values: dict[str, Any], data=None, model=None) -> Config:
    """A checked Config from a plain (resolved) dict, as Hydra composes it."""
    check_model_keys(values)
    cfg = config_from_dict(values)
    check(cfg, data, model)
    return cfg
