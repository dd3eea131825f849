"""The norm registry: a name maps to how its layer is built, which `norm.*` options it takes and which features
it is defined on. A norm registers itself in its own file with `@register_norm(...)`; the command line
(`norm=<name>`), the config checks, the model x norm matrix and `swap_norms` read this table.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import nn

BOTH = ("1d", "2d")  # "1d": (N, C) features; "2d": (N, C, H, W) activations


@dataclass(frozen=True)
class NormSpec:
    make: Callable[..., nn.Module]  # make(num_features, **options), plus kind= where it takes one
    options: tuple[str, ...]  # the NormConfig fields this layer takes
    kinds: tuple[str, ...]  # feature kinds it is defined on
    batch_stats: bool = False  # normalizes with batch statistics in training: needs >= 2 samples
    weight_norm: bool = False  # the model's conv/linear layers get weight norm
    empty: bool = False  # nothing in the norm slot: the layers before it keep their bias, an LSTM is nn.LSTM
    sequence: Callable[..., nn.Module] | None = None  # its form in a recurrent cell, make(num_features, steps, ...)
    channels_last: bool = True  # channels_last=auto gives it NHWC in conv nets (False: slower there, results/bench)

    @property
    def reads(self) -> tuple[str, ...]:
        """The norm.* keys a run with this norm reads: its layer's options, `sync` where it has batch statistics
        (distributed.sync_norms), `init` where it weight-normalizes (the trainer's data init)."""
        return (*self.options, *("sync",) * self.batch_stats, *("init",) * self.weight_norm)

    def build(self, num_features: int, kind: str, **options) -> nn.Module:
        if "kind" in inspect.signature(self.make).parameters:
            return self.make(num_features, kind=kind, **options)
        return self.make(num_features, **options)


NORMS: dict[str, NormSpec] = {}


def register_norm(
    name: str,
    options: tuple[str, ...] = (),
    kinds: tuple[str, ...] = BOTH,
    batch_stats: bool = False,
    weight_norm: bool = False,
    empty: bool = False,
    channels_last: bool = True,
):
    """Decorator for a layer class or factory, `make(num_features, [kind,] **options)`: `norm=<name>` builds it.
    `options` are NormConfig fields (eps, momentum, ...) passed to it by name; `channels_last=False`: the layer is
    slower on NHWC activations (results/bench), so channels_last=auto keeps conv nets NCHW with it."""

    def register(make):
        if name in NORMS:
            raise ValueError(f"norm {name!r} is registered twice")
        NORMS[name] = NormSpec(
            make, tuple(options), tuple(kinds), batch_stats, weight_norm, empty, channels_last=channels_last
        )
        return make

    return register


def register_sequence_form(name: str):
    """Decorator for the recurrent-cell form of a registered norm, `make(num_features, steps, **options)` applied
    to (N, F) at step t: the LSTM builds it through `build_sequence_norm`, never by class or name."""

    def register(make):
        if NORMS[name].sequence is not None:
            raise ValueError(f"norm {name!r} has two recurrent forms")
        NORMS[name] = replace(NORMS[name], sequence=make)
        return make

    return register


def sequence_norms() -> list[str]:
    """The norms a recurrent cell takes: those that declared a recurrent form."""
    return [name for name, spec in NORMS.items() if spec.sequence is not None]


def build_sequence_norm(name: str, num_features: int, steps: int, **options) -> nn.Module:
    """A norm's recurrent-cell form. Raises ValueError for a norm without one."""
    spec = NORMS.get(name)
    if spec is None or spec.sequence is None:
        raise ValueError(f"norm {name!r} is not defined for recurrent cells; choose from {sequence_norms()}")
    return spec.sequence(num_features, steps, **options)


def build_norm(name: str, num_features: int, kind: str = "2d", **options) -> nn.Module:
    """The one door to every activation norm. Raises ValueError for an unknown name, kind or option."""
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; choose from {sorted(NORMS)}")
    spec = NORMS[name]
    if kind not in spec.kinds:
        raise ValueError(f"norm {name!r} is not defined on {kind} features; it takes {list(spec.kinds)}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"norm {name!r} takes no option {unknown[0]!r}; its options are {list(spec.options)}")
    return spec.build(num_features, kind, **options)


register_norm("none", empty=True)(nn.Identity)  # nn.Identity takes and ignores num_features
