"""Comparisons that cannot be made are refused before anything is written, in one ConfigError naming the value:
a norm that would change nothing in your model, data given with a built-in dataset, outputs that are not one
logit per class, a stray label, non-finite inputs, data files whose sizes are not their format's."""

import pytest
import torch
from factories import blobs, feature_net, plain_net, short_head

import normlab
from normlab.config import ConfigError

CUDA = torch.cuda.is_available()
RUN = ["batch_size=20", "max_steps=4", "data.val_size=50", "progress=false"]


def refused(tmp_path, match: str, overrides=(), **given) -> None:
    with pytest.raises(ConfigError, match=match):
        normlab.train(tmp_path / "run", [*RUN, *overrides], **given)
    assert not (tmp_path / "run").exists()


def test_a_norm_that_finds_no_layer_in_your_model_is_refused_and_none_is_not(tmp_path):
    refused(
        tmp_path,
        r"norm=group is not allowed with this model \(Sequential\): it has no normalization layer",
        ["norm=group"],
        model=plain_net,
        data=blobs(),
    )
    summary = normlab.train(tmp_path / "none", [*RUN, "norm=none"], model=plain_net, data=blobs())
    assert summary["status"] == "completed"


def test_a_model_whose_outputs_are_not_one_per_class_is_refused(tmp_path):
    refused(
        tmp_path,
        r"the model gives \(2, 2\) for a batch of 2, not \(2, 3\)",
        ["norm=layer"],
        model=short_head,
        data=blobs(),
    )


def test_data_given_with_a_built_in_dataset_is_refused(tmp_path):
    refused(tmp_path, "data is only taken with dataset=custom, not dataset=mnist", ["dataset=mnist"], data=blobs())


def test_a_stray_label_and_non_finite_inputs_are_named(tmp_path):
    data = blobs()
    labels = data["train"][1].clone()
    labels[7] = 1_000_000
    stray = {**data, "train": (data["train"][0], labels)}
    refused(
        tmp_path,
        "labels reach 1000000, so the model would have 1000001 classes, but 999997 of them have no training image",
        model=feature_net,
        data=stray,
    )
    for bad in (float("nan"), float("inf")):
        x = data["test"][0].clone()
        x[5, 3] = bad
        refused(
            tmp_path, "'test' image 5 holds NaN or inf", model=feature_net, data={**data, "test": (x, data["test"][1])}
        )


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_data_files_with_fewer_images_than_the_format_are_refused(tmp_path, dataset):
    """A file cut short whose header agrees with what is left (MNIST), or a batch missing images (CIFAR-10)."""
    import pickle

    from normlab.config import DataConfig
    from normlab.data import DataError, load_arrays

    from conftest import linked_dataset

    target = linked_dataset(tmp_path, dataset)
    if dataset == "mnist":
        for name, dims in (("t10k-images-idx3-ubyte", 3), ("t10k-labels-idx1-ubyte", 1)):
            raw = (target / name).read_bytes()
            header = bytearray(raw[: 4 + 4 * dims])
            header[4:8] = (100).to_bytes(4, "big")
            per_item = (len(raw) - len(header)) // 10_000
            (target / name).unlink()
            (target / name).write_bytes(bytes(header) + raw[len(header) : len(header) + 100 * per_item])
        words = "mnist's test split under .* holds 100 images, not 10000"
    else:
        batch = pickle.loads((target / "data_batch_1").read_bytes(), encoding="latin1")
        short = {**batch, "data": batch["data"][:100], "labels": batch["labels"][:100]}
        (target / "data_batch_1").unlink()
        (target / "data_batch_1").write_bytes(pickle.dumps(short))
        words = "cifar10's train split under .* holds 40100 images, not 50000"
    with pytest.raises(DataError, match=words):
        load_arrays(dataset, DataConfig(root=str(tmp_path), download=False))


COMMAND_LINES = [
    (["~lr"], "~lr is not allowed: every key of normlab's config is needed"),
    (["~norm"], "~norm is not allowed"),
    (["lr=0.1", "lr=0.2"], "lr is given twice (lr=0.1 and lr=0.2); give it once"),
    (["channels_last=true"], "channels_last=true is not allowed with model=mlp: it has no conv layers"),
    (["norm.sync=true"], "norm.sync=true is not allowed in one process"),
    (["norm=batch_noisy", "norm.sync=true"], "norm.sync=true is not allowed with norm=batch_noisy"),
    (["norm.eps=1e300"], "norm.eps=1e+300 is not allowed; it must be in (0, 1]"),
    (["eval_train=-1"], "eval_train=-1 is not allowed; it must be >= 0"),
    (["landscape=maybe"], "landscape='maybe' is not allowed; expected true or false"),
    (["lr=1e308", "lr_batch_size=1", "batch_size=100"], "the learning rate used, lr * batch_size / lr_batch_size"),
    (["model=lstm", "model.downsample=100"], "the model fails on a batch of shape (2, 1, 28, 28): RuntimeError"),
    (["max_steps=100000000000000000000"], "at most 10,000,000 steps between evaluations"),
    (["max_steps=1000000000", "eval_every=1000000000"], "at most 10,000,000 steps between evaluations"),
    (["+model.width=64"], "model.width=64 is not allowed for model=mlp: it does not read it"),
    (["norm=batch", "+norm.gate_lr_mult=5"], "norm.gate_lr_mult=5 is not allowed with norm=batch: it does not read"),
    (["-m", "norm=group,layer", "+norm.momentum=0.2"], "norm.momentum=0.2 is not allowed with norm=group,layer"),
    (["norm=layer", "norm.momentum=0.2"], "norm.momentum=0.2 is not allowed with norm=layer: it does not read"),
    (["-m", "model=lstm", "model.downsample=1,100"], "model.downsample=100"),
    *([(["amp=true"], "amp=true is not allowed here: bfloat16 autocast runs on CUDA only")] if not CUDA else []),
]


SWEEPS = [
    (["-m", "progress=true,false"], "the sweep runs progress=True and progress=False: the same run"),
    (["-m", "lr=0.1,0.10"], "the sweep runs"),
    (["-m", "checkpoint_every=100,500"], "checkpoint_every=100 and checkpoint_every=500: the same run"),
    (["--config-name=config", "-m", "lr=0.1,-1"], "lr=-1.0 is not allowed"),
    (["-cn", "config", "lr=-1"], "lr=-1.0 is not allowed"),
    # every job of a large sweep is checked, the 2,101st too
    (["-m", "seed=range(0,2100)", "batch_size=32,100000"], "batch_size=100000 is not allowed"),
]


PRECHECKED = COMMAND_LINES + SWEEPS


@pytest.mark.parametrize(("args", "message"), PRECHECKED, ids=[" ".join(a) for a, _ in PRECHECKED])
def test_a_command_line_or_sweep_that_cannot_run_is_one_error_line_before_anything_runs(
    tmp_path, monkeypatch, capsys, args, message
):
    """The command line's pre-check, in process: every job of a sweep, however launched; exit 2, one `error:`
    line, nothing made."""
    from normlab.cli import precheck

    from conftest import CONF, TINY

    monkeypatch.chdir(tmp_path)
    keys = {a.split("=")[0] for a in args}
    with pytest.raises(SystemExit) as exit_:
        precheck([*(t for t in TINY if t.split("=")[0] not in keys), *args], CONF)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("choice", ["hydra/launcher=parallel", "hparams_search=optuna", "hydra/sweeper=optuna"])
def test_a_launcher_or_sweeper_of_the_sweeps_extra_missing_is_one_line_naming_the_extra(monkeypatch, capsys, choice):
    """A wheel installed without `normlab[sweeps]`: Hydra's own error was a config search path, exit 1."""
    import normlab.cli
    from normlab.cli import precheck

    from conftest import CONF, TINY

    monkeypatch.setattr(normlab.cli, "installed", lambda module: False)
    with pytest.raises(SystemExit) as exit_:
        precheck([*TINY, "-m", choice, "seed=0,1"], CONF)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "pip install 'normlab[sweeps]'" in err, err
    assert err.startswith(f"error: {choice} needs hydra_")


def test_a_large_sweep_composes_once_per_choice_of_config_groups(monkeypatch):
    """2,000 jobs over seeds and lrs: Hydra composes once per norm, each job's values are set on a copy, and
    the result is the config Hydra itself composes."""
    import hydra

    from normlab.cli import precheck

    from conftest import CONF, TINY, compose_config

    calls = []
    real = hydra.compose
    monkeypatch.setattr(hydra, "compose", lambda *a, **k: (calls.append(k.get("overrides")), real(*a, **k))[1])
    jobs = precheck([*TINY, "-m", "norm=batch,group", "seed=range(0,500)", "lr=0.1,0.2"], CONF)
    assert len(jobs) == 2000 and len(calls) <= 3  # the sweeper params' composition, then one per norm
    job, cfg = jobs[-1]
    assert cfg == compose_config(*job)


SCRIPT_FLAGS = [
    (["reproduce.py", "bn_convergence", "--jobs", "0"], "argument --jobs: 0 is not allowed; it must be >= 1"),
    (["reproduce.py", "bn_convergence", "--workdir", "/nonexistent/normlab"], "argument --workdir: /nonexistent"),
    (["reproduce.py", "bn_learning_rate", "--tune"], "--tune is not allowed for bn_learning_rate: it sweeps the"),
    (["compare.py", ".", "--out", "/nonexistent/normlab/plot.png"], "its folder /nonexistent/normlab does not exist"),
    (["plot.py", "/nonexistent/normlab"], "argument root: /nonexistent/normlab is not allowed: no such folder"),
    (["summarize.py", "/nonexistent/normlab"], "no such folder"),
    (["bench.py", "--repeats", "0"], "argument --repeats: 0 is not allowed"),
    *([(["bench.py", "--device", "cuda"], "--device cuda is not allowed here: no CUDA device")] if not CUDA else []),
    (["plot.py", ".", "--filter", "norm.name"], "argument --filter: 'norm.name' is not allowed; expected KEY=VALUE"),
]


@pytest.mark.parametrize(("args", "message"), SCRIPT_FLAGS, ids=[" ".join(a) for a, _ in SCRIPT_FLAGS])
def test_the_scripts_refuse_bad_flags_before_any_work(tmp_path, args, message):
    from conftest import call_script

    result = call_script(*args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].count("error:") == 1 and not list(tmp_path.iterdir())


def test_a_label_file_with_one_class_is_refused(tmp_path):
    """A zero-filled MNIST label file trained to 'completed · val_acc 1.0000' without a word."""
    from normlab.config import DataConfig
    from normlab.data import load_arrays
    from normlab.datasets import DataError

    from conftest import linked_dataset

    target = linked_dataset(tmp_path, "mnist")
    raw = (target / "t10k-labels-idx1-ubyte").read_bytes()
    (target / "t10k-labels-idx1-ubyte").unlink()
    (target / "t10k-labels-idx1-ubyte").write_bytes(raw[:8] + bytes(len(raw) - 8))
    with pytest.raises(DataError, match="mnist's test labels under .* are impossible: 1 class"):
        load_arrays("mnist", DataConfig(root=str(tmp_path), download=False))


def test_a_norm_key_one_norm_of_a_sweep_reads_applies_to_it_as_an_experiment_configs_would():
    from normlab.cli import precheck

    from conftest import CONF, TINY

    jobs = precheck([*TINY, "-m", "norm=batch,group", "++norm.group_size=5"], CONF)
    assert sorted((cfg.norm.name, cfg.norm.group_size) for _, cfg in jobs) == [("batch", 5), ("group", 5)]


def test_each_norms_config_file_holds_exactly_the_keys_it_reads():
    """conf/norm/<name>.yaml and the registry's `NormSpec.reads` say the same: a key one of them lacks would be
    refused on the command line though the norm reads it, or shown as an option it ignores."""
    import yaml

    from normlab.norms import NORMS

    from conftest import CONF

    for name, spec in NORMS.items():
        keys = set(yaml.safe_load((CONF / "norm" / f"{name}.yaml").read_text())) - {"name"}
        assert keys == set(spec.reads), name
