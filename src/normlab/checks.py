"""Every check of a run's config in one call, before anything is created: the values themselves
(`config.validate`), then what needs a registry, where the registry is (`data.check_config` for the dataset's
sizes, `models.check_config` for models and norms); and `run_hint`, what to change after a run that failed."""

from typing import Any

from normlab.config import Config, ConfigError, config_from_dict
from normlab.data import check_config as check_data
from normlab.datasets import DatasetSpec, dataset_spec
from normlab.models import MODELS
from normlab.models import check_config as check_model
from normlab.models.lstm import LSTMConfig
from normlab.norms import NORMS


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
    model = values.get("model")
    if not isinstance(model, dict) or model.get("name") not in MODELS:
        return  # a wrong type or name: config_from_dict and the model checks say so
    name, options = model["name"], MODELS[model["name"]].options
    for key, value in model.items():
        if key not in ("name", "_target_", *options):
            raise ConfigError(
                f"model.{key}={value} is not allowed for model={name}: it does not read it (model={name} "
                f"reads {', '.join(options) or 'no other key'})"
            )


def check_norm_overrides(overrides, norms) -> None:
    """Every norm.* key the command line gives is one a chosen norm reads (`NormSpec.reads`; any of a sweep's
    `norms`, as a sweep-wide setting applies to the norms that read it, like an experiment config's):
    `+norm.gate_lr_mult=5 norm=batch` would be accepted and silently ignored."""
    norms = sorted({n for n in norms if n in NORMS})  # an unknown norm: the norm checks name it
    for override in dict.fromkeys(o.lstrip("+~") for o in overrides):
        key = override.split("=", 1)[0]
        option = key[len("norm.") :]
        if key.startswith("norm.") and option != "name" and norms and all(option not in NORMS[n].reads for n in norms):
            reads = "; ".join(
                f"norm={n} reads {', '.join(f'norm.{k}' for k in NORMS[n].reads) or 'no other key'}" for n in norms
            )
            raise ConfigError(
                f"{override} is not allowed with norm={','.join(norms)}: "
                f"{'it does' if len(norms) == 1 else 'none of them does'} not read it ({reads})"
            )


def resolve_channels_last(values: dict[str, Any]) -> dict[str, Any]:
    """channels_last=auto made true or false, so that a run's saved config says which layout it used: NHWC where
    results/bench measured it faster here, for models whose norms see (N, C, H, W) activations, unless the norm
    declared itself slower in NHWC (`register_norm(channels_last=False)`)."""
    layout = values.get("channels_last")
    if layout == "auto":
        model, norm = (group if isinstance(group := values.get(name), dict) else {} for name in ("model", "norm"))
        model_spec, norm_spec = MODELS.get(str(model.get("name"))), NORMS.get(str(norm.get("name")))
        conv_net = model_spec is not None and model_spec.features == "2d"
        values = {**values, "channels_last": conv_net and (norm_spec is None or norm_spec.channels_last)}
    elif isinstance(layout, str):
        raise ConfigError(f"channels_last={layout!r} is not allowed; expected true, false or auto")
    return values


def load_config(values: dict[str, Any], data=None, model=None) -> Config:
    """A checked Config from a plain (resolved) dict, as Hydra composes it."""
    return load_checked(values, data, model)[0]


def load_checked(values: dict[str, Any], data=None, model=None) -> tuple[Config, DatasetSpec]:
    """load_config's Config and its dataset's spec (`check`), for the caller that trains it next."""
    check_model_keys(values)
    cfg = config_from_dict(resolve_channels_last(values))
    return cfg, check(cfg, data, model)


SMALL_BATCH = 8  # at or below it, a run that fails at an unscaled lr gets the linear scaling hint


def run_hint(cfg: Config, status: str, val_acc: float | None, num_classes: int) -> str | None:
    """What a user can do about a known cause of a failed run (diverged, or ended near chance), said where it
    happens: in the run's last line and its summary."""
    near_chance = val_acc is not None and val_acc < 1.5 / num_classes
    if status != "diverged" and not near_chance:
        return None
    if isinstance(cfg.model, LSTMConfig) and cfg.norm.name == "batch" and cfg.model.h0_noise == 0:
        return (
            "BN-LSTM with h_0 = 0: while the leading inputs are blank the recurrent term is the same for every "
            "sample, its batch variance is 0 and the backward multiplies by 1/sqrt(eps) per step; prime h_0 with "
            "noise as Cooijmans et al. do: model.h0_noise=0.1"
        )
    if cfg.lr_batch_size is None and cfg.batch_size <= SMALL_BATCH:
        return (
            f"batch {cfg.batch_size} at lr {cfg.lr:g} may be too large a step; lr_batch_size=32 scales lr with the "
            f"batch (the linear scaling rule: lr {cfg.lr:g} is for batch 32, batch {cfg.batch_size} runs lr "
            f"{cfg.lr * cfg.batch_size / 32:g})"
        )
    return None
