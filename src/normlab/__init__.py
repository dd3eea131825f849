"""normlab: reproduce, measure and explain the normalization papers.

The Python API (imported on first use, so `import normlab` stays light):
    normlab.train(run_dir, overrides, model=..., data=...)   your model and data, normlab's trainer and logs
    normlab.swap_norms(module, "group")                     normlab's norms in any nn.Module
    normlab.build_norm("group", 64)                         one norm layer
    normlab.register_norm / register_model / register_dataset   add your own, by name
"""

import importlib

__version__ = "0.1.0"  # the one place it is written (pyproject.toml reads it)

_EXPORTS = {
    "train": "normlab.api",
    "swap_norms": "normlab.norms",
    "build_norm": "normlab.norms",
    "register_norm": "normlab.norms",
    "build_model": "normlab.models",
    "register_model": "normlab.models",
    "register_dataset": "normlab.datasets",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'normlab' has no attribute {name!r}")
