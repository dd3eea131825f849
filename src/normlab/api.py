"""normlab from Python: `normlab.train(run_dir, overrides, model=..., data=...)` trains your model on your data with
the same config, trainer, TensorBoard logs, checkpoints and summary.json as `python run.py`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from normlab.checks import check_norm_overrides, load_checked
from normlab.cli import CONF, one_line, plain_config, register_groups, register_resolvers
from normlab.config import ConfigError
from normlab.trainer import train as train_run


def compose(overrides: Sequence[str]) -> dict:
    """The config the command line `python run.py <overrides>` would run, as plain values."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    register_groups(CONF)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except Exception as e:  # noqa: BLE001 - an unknown key or option, a parse error: the caller's input
        raise ConfigError(f"cannot compose the config from {list(overrides)}: {one_line(e)}") from None
    finally:
        GlobalHydra.instance().clear()
    experiment = next((o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), "default")
    return plain_config(cfg, experiment)


def train(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    model: nn.Module | Callable[..., nn.Module] | None = None,
    data: dict | None = None,
) -> dict:
    """Train one run in `run_dir` and return its summary (as summary.json holds it).

    overrides: the command line's `key=value` strings, e.g. ["norm=group", "batch_size=8", "max_steps=500"].
    model: your nn.Module, or better a factory called as `model(num_classes=...)` after seeding (the same seed,
        the same initial weights); normlab puts the configured norm into it (`swap_norms`). Implies model=custom.
    data: {"train": (images, labels), "test": (images, labels)} of tensors or arrays (`datasets.custom`).
        Implies dataset=custom; the validation split is held out of "train" (data.val_size).
    Bad input raises ConfigError (a ValueError) before anything is written. A run dir holding a finished run of
    the same config is skipped, not retrained: normlab cannot tell two Python objects apart, so give each model
    or dataset its own run_dir (or pass overwrite=true)."""
    overrides = list(overrides)
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    if model is not None and "model" not in given:
        overrides.append("model=custom")
    if data is not None and "dataset" not in given:
        overrides.append("dataset=custom")
    cfg, spec = load_checked(compose(overrides), data, model)
    check_norm_overrides(overrides, [cfg.norm.name])
    return train_run(cfg, Path(run_dir), data=spec if data is not None else None, model=model)
