"""The trainer on real data, tiny subsets: it learns, logs what it promises, and is reproducible."""

import dataclasses
import json

import pytest

from normlab.commands import migrate
from normlab.models import MODELS, compatible_norms
from normlab.norms import NORMS
from normlab.runlog import SCALAR_TAGS
from normlab.trainer import train

from conftest import compose_config

METRIC_KEYS = {"step", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr"}
METRIC_KEYS |= {"samples_per_s"}
SUMMARY_KEYS = {"status", "steps", "epochs", "val_acc", "test_acc", "test_loss", "best_val_acc", "best_val_step"}
SUMMARY_KEYS |= {"test_acc_at_best_val", "train_loss", "wall_s", "samples_per_s", "config"}


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_thirty_steps_on_mnist_lower_the_loss_and_write_every_file(tmp_path):
    cfg = compose_config("max_steps=30", "eval_every=10")
    summary = train(cfg, tmp_path)
    records = metrics(tmp_path)
    assert [r["step"] for r in records] == [10, 20, 30]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["test_loss"] < records[0]["test_loss"]
    assert all(set(r) == METRIC_KEYS | {"last_hidden_input"} for r in records)  # BN has no internals to log
    percentiles = records[-1]["last_hidden_input"]
    assert list(percentiles) == ["p15", "p50", "p85"] and all(len(v) == 3 for v in percentiles.values())
    assert all(lo <= mid <= hi for lo, mid, hi in zip(*percentiles.values()))
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert set(on_disk) >= SUMMARY_KEYS and on_disk["status"] == "completed" and on_disk["steps"] == 30
    assert on_disk["config"]["norm"]["name"] == "batch" and on_disk == json.loads(json.dumps(summary))
    # model selection on the validation split; the test accuracy is the one of the selected evaluation
    best = max(records, key=lambda r: r["val_acc"])
    assert on_disk["best_val_acc"] == best["val_acc"] and on_disk["best_val_step"] == best["step"]
    assert on_disk["test_acc_at_best_val"] == best["test_acc"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {tag for key, tag in SCALAR_TAGS.items() if key in records[-1]} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("acc/test")] == [10, 20, 30]
    assert events.Scalars("acc/test")[-1].value == pytest.approx(records[-1]["test_acc"])


def test_any_run_draws_curves_evaluations_and_training_points_chosen_from_its_length(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # eval_every=null, log_every=null; evaluations of 100 images cost little beside 60 steps of 60 images
    summary = train(compose_config("max_steps=60", "data.val_size=50", "data.test_subset=50"), tmp_path)
    assert (summary["eval_every"], summary["log_every"]) == (3, 1)  # 20 evaluations; ~10 points per evaluation
    records = metrics(tmp_path)
    assert [r["step"] for r in records] == list(range(3, 61, 3))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    train_points = events.Scalars("loss/train")
    assert [e.step for e in train_points] == list(range(1, 61))  # one training-curve point per step here
    # the mean of the training points since the previous evaluation is the evaluation's train_loss
    by_step = {e.step: e.value for e in train_points}
    for r in records:
        window = [by_step[s] for s in range(r["step"] - 2, r["step"] + 1)]
        assert sum(window) / 3 == pytest.approx(r["train_loss"], rel=1e-5)
    long = compose_config("max_steps=1000", "eval_every=250", "log_every=50")
    from normlab.config import Cadence, cadences

    assert cadences(long, 1000, 5_000, 10_000) == Cadence(250, 50, test_each_eval=True)
    assert cadences(compose_config(), 10_000, 5_000, 10_000) == Cadence(500, 50, test_each_eval=False)


@pytest.mark.parametrize("batch_size,steps", [(2, 50), (2, 1000), (32, 1000), (32, 10_000), (60, 10_000), (128, 1)])
@pytest.mark.parametrize("val_images", [5_000, 0])
def test_evaluations_take_at_most_their_share_of_a_run(batch_size, steps, val_images):
    """eval_every=null: at most 20 evaluations, fewer where their forward passes would cost more than a fifth of
    the run (a training image costs 3 forward passes), and always one at the end. Each reads the validation split,
    the test set only the last (with no validation split, every one reads the test set)."""
    from normlab.config import EVAL_SHARE, EVALUATIONS, cadences

    cfg, test_images = compose_config(f"batch_size={batch_size}"), 10_000
    cadence = cadences(cfg, steps, val_images, test_images)
    assert cadence.test_each_eval == (val_images == 0)
    each, once = (val_images, test_images) if val_images else (test_images, 0)
    n_evals = -(-steps // cadence.eval_every)
    assert 1 <= n_evals <= EVALUATIONS
    evaluating, budget = n_evals * each + once, EVAL_SHARE / (1 - EVAL_SHARE) * 3 * batch_size * steps
    assert n_evals == 1 or evaluating <= budget
    if n_evals < EVALUATIONS:  # one more evaluation would pass the share (or the run has one step)
        assert evaluating + each > budget or steps == 1


def test_a_chosen_cadence_reads_the_test_set_once_at_the_end_and_a_set_one_at_every_evaluation(tmp_path):
    """The card's kind of run (eval_every=null) evaluates more often on the validation split alone and reads the
    test set once; a claim's eval_every keeps the test set at every evaluation (its endpoints average the last 5)."""
    chosen = compose_config("max_steps=60", "data.val_size=100", "data.test_subset=100", "data.train_subset=600")
    summary = train(chosen, tmp_path / "chosen")
    rows = metrics(tmp_path / "chosen")
    assert len(rows) > 2 and summary["test_each_eval"] is False
    assert [r["test_acc"] is None for r in rows] == [True] * (len(rows) - 1) + [False]
    assert all(r["val_acc"] is not None for r in rows) and summary["test_acc"] == rows[-1]["test_acc"]
    every = train(dataclasses.replace(chosen, eval_every=summary["eval_every"]), tmp_path / "set")
    assert every["test_each_eval"] is True and all(r["test_acc"] is not None for r in metrics(tmp_path / "set"))
    assert [r["val_acc"] for r in metrics(tmp_path / "set")] == [r["val_acc"] for r in rows]  # the same run


def test_cifar10_cnn_run_completes(tmp_path):
    cfg = compose_config("dataset=cifar10", "model=cnn", "batch_size=16", "max_steps=8", "eval_every=4")
    summary = train(cfg, tmp_path)
    assert summary["status"] == "completed" and summary["steps"] == 8
    assert 0.0 <= summary["test_acc"] <= 1.0 and summary["config"]["data"]["augment"] is True
    assert all(set(r) == METRIC_KEYS for r in metrics(tmp_path))  # the MLP's probe only where there is an MLP


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    def run(seed, name):
        train(compose_config("max_steps=20", "eval_every=10", f"seed={seed}"), tmp_path / name)
        return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in metrics(tmp_path / name)]

    first, again, other = run(0, "a"), run(0, "b"), run(1, "c")
    assert first == again
    assert first != other


def test_augmented_cifar_batches_are_reproducible(tmp_path):
    def run(name):
        cfg = compose_config(
            "dataset=cifar10", "model=cnn", "model.width=8", "batch_size=8", "max_steps=6", "eval_every=3"
        )
        train(cfg, tmp_path / name)
        return [(r["train_loss"], r["test_loss"]) for r in metrics(tmp_path / name)]

    assert run("a") == run("b")


def test_huge_learning_rate_is_recorded_as_diverged(tmp_path):
    summary = train(
        compose_config("norm=none", "model.activation=relu", "lr=1e10", "max_steps=30", "eval_every=10"),
        tmp_path,
    )
    assert summary["status"] == "diverged"
    assert 1 <= summary["diverged_at_step"] <= 10
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def test_finished_run_is_skipped_and_overwrite_reruns(tmp_path):
    cfg = compose_config("max_steps=10", "eval_every=5")
    first = train(cfg, tmp_path)
    again = train(cfg, tmp_path)
    assert again["skipped"] and again["test_acc"] == first["test_acc"]
    rerun = train(compose_config("max_steps=10", "eval_every=5", "overwrite=true"), tmp_path)
    assert "skipped" not in rerun and rerun["test_acc"] == first["test_acc"]
    assert len(metrics(tmp_path)) == 2


def _norm_model_pairs():
    for norm in sorted(NORMS):
        model = "mlp" if norm in compatible_norms("mlp") else "cnn"
        yield model, norm


@pytest.mark.parametrize(("model", "norm"), list(_norm_model_pairs()))
def test_every_norm_learns_on_mnist(tmp_path, model, norm):
    overrides = [f"model={model}", f"norm={norm}", "eval_every=15", "max_steps=30", "model.activation=relu"]
    if model == "cnn":  # (instance norm's CNN is at 0.17 after 30 steps)
        overrides += ["model.width=8", "max_steps=60", "eval_every=30"]
    cfg = compose_config(*overrides, "optimizer=adam", "lr=0.003")
    summary = train(cfg, tmp_path)
    records = metrics(tmp_path)
    assert summary["status"] == "completed"
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["test_acc"] > 0.2  # chance is 0.1


def test_weight_norm_data_init_runs_in_training(tmp_path):
    cfg = compose_config("norm=weight", "norm.init=data", "max_steps=10", "eval_every=5")
    assert train(cfg, tmp_path)["status"] == "completed"


def test_internals_reach_the_summary(tmp_path):
    cfg = compose_config("model=cnn", "model.width=8", "norm=batch_instance", "max_steps=4", "eval_every=2")
    layers = train(cfg, tmp_path)["norm_layers"]
    assert len(layers) == 4 and all(0 <= v["gate_mean"] <= 1 for v in layers.values())
    assert [r["norm_layers"] for r in metrics(tmp_path)][-1] == layers  # over training, in metrics.jsonl
    cfg = compose_config("model=cnn", "model.width=8", "norm=switchable", "norm.bn_stats=batch_average", "max_steps=4")
    layers = train(cfg, tmp_path / "sn")["norm_layers"]
    assert all(set(v) == {f"{p}_{s}" for p in ("mean", "var") for s in ("in", "ln", "bn")} for v in layers.values())
    cfg = compose_config("norm=group", "max_steps=2")
    assert {v["num_groups"] for v in train(cfg, tmp_path / "gn")["norm_layers"].values()} == {25}
    assert MODELS["mlp"].features == "1d"


def test_batch_average_statistics_change_the_evaluations_not_the_training(tmp_path):
    """norm.bn_stats=batch_average recomputes BN-LSTM's population statistics before every evaluation without
    touching the training: the same losses step for step (h_0 noise drawn from the same stream), other
    evaluations, and the final model's running statistics are the batch average, not the running one."""
    import torch

    from normlab.runlog import read_checkpoint

    base = [
        "model=lstm",
        "model.sequence=pixel",
        "model.downsample=4",
        "model.h0_noise=0.1",
        "norm=batch",
        "max_steps=6",
        "eval_every=2",
        "data.val_size=100",
        "data.test_subset=100",
    ]
    runs = {}
    for bn_stats in ("moving", "batch_average"):
        train(compose_config(*base, f"norm.bn_stats={bn_stats}"), tmp_path / bn_stats)
        runs[bn_stats] = metrics(tmp_path / bn_stats)
    losses = {k: [r["train_loss"] for r in v if "train_loss" in r] for k, v in runs.items()}
    assert len(losses["moving"]) == 3 and losses["moving"] == losses["batch_average"]
    evals = {k: [r["val_loss"] for r in v if "val_loss" in r] for k, v in runs.items()}
    assert len(evals["moving"]) == 3 and all(a != b for a, b in zip(evals["moving"], evals["batch_average"]))
    moving, average = (read_checkpoint(tmp_path / k / "last.pt")["model"] for k in runs)
    assert torch.equal(moving["core.w_h.weight"], average["core.w_h.weight"])
    assert not torch.equal(moving["core.norm_x.running_var"], average["core.norm_x.running_var"])


@pytest.mark.parametrize(
    "optimizer",
    [
        ["optimizer=adam", "optimizer.weight_decay=0.01", "optimizer.betas=[0.8,0.99]"],
        ["optimizer=sgd", "optimizer.nesterov=true", "optimizer.weight_decay=0.01"],
    ],
)
def test_fused_optimizer_step_matches_the_foreach_one(optimizer):
    """`optimizer.fused` (default) changes the kernel, not the update: every setting still reaches the step."""
    import torch

    from normlab.models import build_model
    from normlab.optim import build_optimizer

    final = {}
    for fused in (True, False):
        cfg = compose_config(
            "model=cnn", "model.width=4", "norm=batch_instance", *optimizer, f"optimizer.fused={fused}"
        )
        torch.manual_seed(0)
        model = build_model(cfg.model, cfg.norm, (1, 28, 28), 10).double()  # float64: no rounding amplified
        opt = build_optimizer(model, cfg)
        assert opt.defaults["fused"] is (True if fused else None)
        assert [g["name"] for g in opt.param_groups][:2] == ["decay", "no_decay"] and len(opt.param_groups) == 6
        for step in range(4):
            x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(step), dtype=torch.float64)
            loss = model(x).logsumexp(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        final[fused] = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.manual_seed(0)
    start = torch.cat([p.detach().flatten() for p in build_model(cfg.model, cfg.norm, (1, 28, 28), 10).parameters()])
    torch.testing.assert_close(final[True], final[False], rtol=1e-10, atol=1e-12)
    assert (final[True] - start.double()).abs().max() > 1e-2


def test_rmsprop_is_the_recurrent_bn_papers_update_with_momentum():
    """optimizer=rmsprop: v = α v + (1 − α) g², b = μ b + g / (√v + ε), θ −= lr b (α 0.99, μ 0.9, ε 1e-8),
    written out here and compared over three steps."""
    import torch

    from normlab.models import build_model
    from normlab.optim import build_optimizer

    cfg = compose_config("model=mlp", "model.hidden=[8]", "norm=none", "optimizer=rmsprop", "lr=0.01")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.norm, (1, 4, 4), 3).double()
    opt = build_optimizer(model, cfg)
    assert type(opt).__name__ == "RMSprop" and opt.defaults["momentum"] == 0.9
    expected = [p.detach().clone() for p in model.parameters()]
    v = [torch.zeros_like(p) for p in expected]
    b = [torch.zeros_like(p) for p in expected]
    for step in range(3):
        x = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(step), dtype=torch.float64)
        opt.zero_grad()
        model(x).logsumexp(1).mean().backward()
        for i, p in enumerate(model.parameters()):
            v[i] = 0.99 * v[i] + 0.01 * p.grad**2
            b[i] = 0.9 * b[i] + p.grad / (v[i].sqrt() + 1e-8)
            expected[i] = expected[i] - 0.01 * b[i]
        opt.step()
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("decay_all", [False, True])
def test_weight_decay_reaches_norm_parameters_and_biases_only_with_decay_all_and_never_the_gates(decay_all):
    """Default: conv/linear weights decay, biases and γ, β do not. decay_all (the BIN authors' recipe): every
    parameter decays but the BIN gates, which train at their own lr without decay either way."""
    from normlab.models import build_model
    from normlab.optim import build_optimizer

    cfg = compose_config(
        "model=cnn",
        "model.width=8",
        "norm=batch_instance",
        "optimizer.weight_decay=1e-4",
        f"optimizer.decay_all={decay_all}",
    )
    model = build_model(cfg.model, cfg.norm, (3, 32, 32), 10)
    decay_of = {id(p): g["weight_decay"] for g in build_optimizer(model, cfg).param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        expected = 0.0 if name.endswith("gate") else 1e-4 if decay_all or p.ndim > 1 else 0.0
        assert decay_of[id(p)] == expected, name
    assert any(n.endswith("gate") for n, _ in model.named_parameters())
    assert any(p.ndim == 1 and not n.endswith("gate") for n, p in model.named_parameters())


def test_a_diverged_bn_lstm_names_the_remedy(tmp_path):
    """Pixel sequences, h_0 = 0: the leading blank pixels give the recurrent BN a zero batch variance."""
    cfg = compose_config(
        "model=lstm",
        "model.sequence=pixel",
        "model.hidden_size=16",
        "norm=batch",
        "max_steps=4",
        "eval_every=2",
        "batch_size=8",
        "lr=0.01",
    )
    summary = train(cfg, tmp_path)
    assert summary["status"] == "diverged" and "model.h0_noise=0.1" in summary["hint"]
    from normlab.checks import run_hint

    assert run_hint(compose_config("model=lstm", "norm=batch", "model.h0_noise=0.1"), "diverged", None, 10) is None


def test_the_linear_scaling_rule_sets_the_optimizers_lr_and_a_small_batch_near_chance_is_told_of_it():
    from normlab.checks import run_hint
    from normlab.models import build_model
    from normlab.optim import build_optimizer

    cfg = compose_config("lr=0.1", "lr_batch_size=32", "batch_size=2")
    model = build_model(cfg.model, cfg.norm, (1, 28, 28), 10)
    assert cfg.scaled_lr == pytest.approx(0.00625)
    assert [g["lr"] for g in build_optimizer(model, cfg).param_groups] == pytest.approx([0.00625, 0.00625])
    unscaled = compose_config("lr=0.1", "batch_size=2")
    assert build_optimizer(model, unscaled).param_groups[0]["lr"] == 0.1
    hint = run_hint(unscaled, "completed", 0.11, 10)  # ended near chance (10 classes)
    assert "lr_batch_size=32" in hint and "lr 0.00625" in hint
    assert run_hint(unscaled, "completed", 0.6, 10) is None  # it learned
    assert run_hint(cfg, "diverged", None, 10) is None  # already scaled: no advice to scale
    assert run_hint(compose_config("lr=0.1", "batch_size=32"), "diverged", None, 10) is None


def test_a_plain_log_beside_the_metrics_and_plain_lines_off_a_terminal(tmp_path):
    from conftest import TINY, run_cli

    result = run_cli(*[a for a in TINY if a != "progress=false"], "max_steps=20", "eval_every=10", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (log,) = tmp_path.rglob("train.log")
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("step 10 · epoch ") and " · val_acc " in lines[0]
    assert "\r" not in result.stderr and sum(" · step " in line for line in result.stderr.splitlines()) == 2


def test_a_run_saved_before_a_key_existed_is_another_run_until_migrated(tmp_path):
    """A saved config that lacks a key of today's is refused, naming the key: normlab cannot tell what the run
    meant by it. `normlab migrate` says it (lr_batch_size null; before the validation split every image
    trained, so data.val_size 0, not today's 5000), drops dataset.augment (data.augment's copy) and the model keys
    the run's model does not read (runs saved every model's), and gives
    bn_small_batch's lr, saved scaled to the batch, as lr 0.1 for batch 32: the migrated record, summary or
    checkpoint, is today's run. A second pass changes nothing."""
    from normlab.config import ConfigError, comparable
    from normlab.rundir import prepare_run_dir
    from normlab.runlog import read_checkpoint, save_checkpoint, write_json

    cfg = compose_config("experiment=bn_small_batch", "norm=group", "batch_size=2", "seed=1")
    current = cfg.to_dict()
    assert (current["lr"], current["lr_batch_size"], cfg.scaled_lr) == (0.1, 32, 0.00625)
    old = {**{k: v for k, v in current.items() if k != "lr_batch_size"}, "lr": 0.00625}  # ${normlab.scale}'s lr
    old["dataset"] = {**current["dataset"], "augment": True}  # a copy of data.augment's default, since removed
    old["model"] = {**current["model"], "hidden_size": 100, "depth": 20}  # every model's keys, as runs saved them
    sweep = tmp_path / "runs" / "bn_small_batch_cpu"
    for name in ("done", "killed", "before-split"):
        (sweep / name).mkdir(parents=True)
    write_json(sweep / "done" / "summary.json", {"status": "completed", "config": old})
    save_checkpoint(sweep / "killed" / "last.pt", {"step": 3, "config": old})
    before_split = {**old, "data": {k: v for k, v in current["data"].items() if k != "val_size"}}
    write_json(sweep / "before-split" / "summary.json", {"status": "completed", "config": before_split})
    tuned = tmp_path / "runs" / "sn_switches_cpu" / "cifar10-cnn-switchable-bs2-lr0.018750000000000003-s1"
    tuned.mkdir(parents=True)  # a tuned run at 3x, named by the lr it was given
    write_json(tuned / "summary.json", {"status": "completed", "config": {**old, "lr": 0.1 * 3 * 2 / 32}})
    with pytest.raises(ConfigError, match=r"lr_batch_size missing there \(saved by an earlier normlab: `normlab migr"):
        prepare_run_dir(cfg, sweep / "done")

    assert migrate.migrate_tree(tmp_path / "runs") == (4, 0)
    assert not tuned.exists() and (tuned.parent / "cifar10-cnn-switchable-bs2-lr0.01875-s1").is_dir()
    assert prepare_run_dir(cfg, sweep / "done")[0] == "skip"
    assert comparable(read_checkpoint(sweep / "killed" / "last.pt")["config"]) == comparable(current)
    with pytest.raises(ConfigError, match=rf"data.val_size=0 there, {current['data']['val_size']} now"):
        prepare_run_dir(cfg, sweep / "before-split")
    assert migrate.migrate_tree(tmp_path / "runs") == (0, 4)
    other = migrate.migrate({**old, "lr_batch_size": None}, "bin_gates_cpu")  # lr as given elsewhere
    assert (other["lr"], other["lr_batch_size"]) == (0.00625, None)


def test_a_run_says_what_it_will_do_and_how_long_is_left(tmp_path, capsys):
    """Before its first step a run prints its length and its evaluations; off a terminal, each evaluation's line
    ends with the time left."""
    train(compose_config("max_steps=4", "eval_every=2", "progress=true", "data.train_subset=600"), tmp_path)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "normlab: 4 steps (0.4 epochs) at batch 60; 2 evaluations of 1,000 images, every 2 steps"
    assert err[1] == "normlab: 600 training images (500 more held out for validation: data.val_size)"
    assert [line.split(" · ")[1] for line in err[2:]] == ["step 2", "step 4"]
    assert all(line.endswith(" s left") for line in err[2:])
