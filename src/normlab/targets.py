"""`_target_`: your own model or data factory, named by its dotted import path (Hydra's convention)."""

import importlib

from normlab.config import ConfigError


def import_target(path: str | None, key: str):
    """The callable at `package.module.name` (absolute: each part a Python name); a ConfigError naming `key` where
    there is none."""
    if not path or "." not in path or not all(part.isidentifier() for part in path.split(".")):
        raise ConfigError(
            f"{key}={path!r} is not allowed; give the factory as <module>.<function>, "
            "e.g. mypkg.nets.make_net (importable: on PYTHONPATH or installed)"
        )
    module_name, _, attr = path.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{key}={path} cannot be imported: {e}") from None
    if not callable(target):
        raise ConfigError(f"{key}={path} is not callable")
    return target
