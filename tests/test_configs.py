"""conf/ composes for every group option, and the typed config rejects what it must."""

import json
import re

import pytest

from normlab.cli import config_groups
from normlab.config import OPTIMIZERS, ConfigError
from normlab.models import MODELS, check_compatible, compatible_norms
from normlab.norms import NORMS

from conftest import CONF, compose_config

GROUPS = config_groups(CONF)
# a model that accepts each norm, so that every norm option composes
MODEL_FOR = {norm: next(m for m in MODELS if norm in compatible_norms(m)) for norm in NORMS}
CUSTOM_TARGETS = {
    "model": "factories.small_net",
    "dataset": "examples.resnet18_group_norm.make_data",
}


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_composes(group, option):
    extra = [f"model={MODEL_FOR[option]}"] if group == "norm" else []
    if group == "model":
        extra = [f"norm={compatible_norms(option)[0]}"]
    if option == "custom":  # your own factory, named by its import path
        extra.append(f"{group}._target_={CUSTOM_TARGETS[group]}")
        extra += ["data.train_subset=null", "data.test_subset=null"] if group == "dataset" else []
    cfg = compose_config(f"{group}={option}", *extra)
    if group == "hparams_search":  # it configures Hydra's sweeper, not the run (test_dashboards runs it)
        return
    name = cfg.experiment if group == "experiment" else getattr(cfg, group).name
    assert name == option


def test_groups_cover_the_registries():
    assert set(GROUPS["norm"]) == set(NORMS)
    assert set(GROUPS["model"]) == set(MODELS)
    assert set(GROUPS["dataset"]) == {"mnist", "cifar10", "custom"}
    assert set(GROUPS["optimizer"]) == set(OPTIMIZERS)
    assert set(GROUPS["scheduler"]) == {"constant", "step", "cosine"}


def test_defaults_are_the_bn_paper_mlp_on_mnist():
    cfg = compose_config()
    assert (cfg.dataset.name, cfg.model.name, cfg.norm.name) == ("mnist", "mlp", "batch")
    assert cfg.model.hidden == (100, 100, 100) and cfg.model.activation == "sigmoid" and cfg.batch_size == 60


def test_augment_is_one_key_whose_default_the_dataset_sets():
    """data.augment is the one key: the dataset's conf file sets its default (cifar10 on, mnist off), an
    experiment or the command line overrides it, and the dataset group holds no copy of it."""
    assert compose_config().data.augment is False
    assert compose_config("dataset=cifar10").data.augment is True
    assert compose_config("dataset=cifar10", "data.augment=false").data.augment is False
    assert compose_config("dataset=mnist", "data.augment=true").data.augment is True
    assert compose_config("experiment=bin_gates").data.augment is True  # its dataset: cifar10
    assert compose_config("experiment=wn_meanbn_cpu").data.augment is False  # cifar10, and augment: false
    assert set(compose_config("dataset=cifar10").to_dict()["dataset"]) == {"name", "target"}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("norm", sorted(NORMS))
def test_model_norm_matrix(model, norm):
    target = [f"model._target_={CUSTOM_TARGETS['model']}"] if model == "custom" else []
    if norm in compatible_norms(model):
        check_compatible(model, norm)
        assert compose_config(f"model={model}", f"norm={norm}", *target).norm.name == norm
    else:
        with pytest.raises(ConfigError, match=f"norm={norm} is not defined for model={model}"):
            compose_config(f"model={model}", f"norm={norm}")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("batch_size=0", "batch_size=0 is not allowed"),
        ("lr=0", "lr=0.0 is not allowed"),
        ("max_steps=-1", "max_steps=-1 is not allowed"),
        ("epochs=0", "epochs=0 is not allowed"),
        ("batch_size=1.5", "batch_size=1.5 is not allowed; expected an integer"),
        ("progress=maybe", "progress='maybe' is not allowed; expected true or false"),
        ("device=tpu", "device='tpu' is not allowed"),
        ("model.activation=gelu", "model.activation='gelu' is not allowed"),
        ("norm.momentum=0", "norm.momentum=0.0 is not allowed"),
        ("scheduler=step scheduler.milestones=[2]", "scheduler.milestones=[2.0] is not allowed"),
        ("+model.dept=3", "model.dept=3 is not allowed for model=mlp: it does not read it"),
        ("channels_last=sideways", "channels_last='sideways' is not allowed; expected true, false or auto"),
    ],
)
def test_bad_values_raise_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        compose_config(*override.split())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model=mlp model.hidden=[100,0]", "model.hidden=[100, 0] is not allowed; it must be one or more widths >= 1"),
        ("model=mlp model.hidden=[]", "model.hidden=[] is not allowed; it must be one or more widths >= 1"),
        (
            "model=mlp model.activation=gelu",
            "model.activation='gelu' is not allowed; choose from relu, sigmoid, tanh, leaky_relu",
        ),
        ("model=mlp model.init_std=0", "model.init_std=0.0 is not allowed; it must be > 0 or null"),
        ("model=cnn model.width=0", "model.width=0 is not allowed; it must be >= 1"),
        ("model=convpool model.activation=elu", "model.activation='elu' is not allowed; choose from relu"),
        ("model=inception_lite model.width=-4", "model.width=-4 is not allowed; it must be >= 1"),
        ("model=resnet model.width=0", "model.width=0 is not allowed; it must be >= 1"),
        ("model=lstm model.hidden_size=0", "model.hidden_size=0 is not allowed; it must be >= 1"),
        ("model=lstm model.sequence=columns", "model.sequence='columns' is not allowed; choose from rows, pixel"),
        ("model=lstm model.downsample=0", "model.downsample=0 is not allowed; it must be >= 1"),
        ("model=lstm model.h0_noise=-0.1", "model.h0_noise=-0.1 is not allowed; it must be >= 0"),
        (
            "model=lstm model.recurrent_init=eye",
            "model.recurrent_init='eye' is not allowed; choose from uniform, orthogonal, identity",
        ),
        ("model=lstm model.hidden_size=big", "model.hidden_size='big' is not allowed; expected an integer"),
    ],
)
def test_each_models_own_checks_refuse_its_bad_values(override, message):
    """Each model's config class checks its keys' ranges (`validate`, beside the model): one line naming the value
    and what is allowed."""
    with pytest.raises(ConfigError) as error:
        compose_config(*override.split())
    assert str(error.value) == message or str(error.value).startswith(message), str(error.value)


def test_num_groups_and_batch_size_one():
    with pytest.raises(ConfigError, match="norm.num_groups=0 is not allowed"):
        compose_config("norm=group", "norm.num_groups=0")
    with pytest.raises(ConfigError, match="batch_size=1 is not allowed with norm=batch"):
        compose_config("batch_size=1")
    assert compose_config("norm=group", "batch_size=1").batch_size == 1


def test_channels_last_auto_is_nhwc_for_conv_nets_with_every_norm_but_instance():
    """The default, auto, resolves when the config is built (a run's saved config says which layout it used): on
    for the registry's conv nets ("2d" models) except with instance norm (it declares itself slower in NHWC), off
    otherwise."""
    conv_nets = [m for m, spec in MODELS.items() if spec.features == "2d"]
    assert {"cnn", "resnet", "inception_lite", "convpool"} <= set(conv_nets)
    assert [name for name, spec in NORMS.items() if not spec.channels_last] == ["instance"]
    for model in conv_nets:
        for norm in compatible_norms(model):
            assert compose_config(f"model={model}", f"norm={norm}").channels_last is (norm != "instance"), norm
    assert compose_config("model=mlp").channels_last is False and compose_config("model=lstm").channels_last is False
    assert compose_config("model=cnn", "channels_last=false").channels_last is False
    assert compose_config("model=cnn", "norm=instance", "channels_last=true").channels_last is True


def test_each_models_config_is_its_conf_file():
    """A model's config class (its registry entry's: what the model reads; any other model.* key is refused) and
    conf/model/<name>.yaml name the same keys with the same defaults, and the composed `model=<name>` is built as
    that class."""
    import dataclasses

    import yaml

    for name, spec in MODELS.items():
        listed = yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())
        listed = {("target" if k == "_target_" else k): v for k, v in listed.items()}
        defaults = json.loads(json.dumps(dataclasses.asdict(spec.config())))  # tuples as YAML lists
        assert listed == defaults, name
        assert set(listed) - {"name"} == set(spec.options), name
        if name != "custom":  # (model=custom needs a _target_)
            assert type(compose_config(f"model={name}").model) is spec.config, name


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+model.h0_noise=0.1",
            "model.h0_noise=0.1 is not allowed for model=mlp: it does not read it (model=mlp "
            "reads hidden, activation, init_std, norm_logits)",
        ),
        ("+model.width=64", "model.width=64 is not allowed for model=mlp"),
    ],
)
def test_a_key_the_model_does_not_read_is_refused(override, message):
    from normlab.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        compose_config(override)


def test_hydras_run_dir_names_leave_out_the_keys_in_the_name_and_those_that_never_make_another_run():
    """conf/hydra/normlab.yaml's exclude_keys, against config.RUN_INVARIANT: the keys the name already shows, and
    every run-invariant key but the measurement ones (set on the command line, those name a run dir of their own,
    so that a finished run without them is not skipped)."""
    import yaml

    from normlab.config import MEASUREMENT_KEYS, RUN_INVARIANT

    hydra = yaml.safe_load((CONF / "hydra" / "normlab.yaml").read_text())
    excluded = hydra["job"]["config"]["override_dirname"]["exclude_keys"]
    named = {"experiment", "hparams_search", "dataset", "model", "norm", "batch_size", "lr", "seed"}
    assert set(excluded) == named | (set(RUN_INVARIANT) - set(MEASUREMENT_KEYS))
    assert len(excluded) == len(set(excluded))


def test_a_runs_identity_leaves_out_the_run_invariant_keys_nested_ones_included():
    from normlab.config import Config, identity

    base = Config().to_dict()
    changed = {**base, "progress": False, "landscape": True, "data": {**base["data"], "root": "/elsewhere"}}
    assert identity(changed) == identity(base)
    assert identity({**base, "seed": 1}) != identity(base) and identity({**base, "seed": 1}, seed=False) == identity(
        base, seed=False
    )
    assert identity({**base, "data": {**base["data"], "val_size": 0}}) != identity(base)
