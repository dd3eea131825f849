"""Speed, measured side by side in one process: normlab's trainer vs a plain PyTorch loop, the in-memory data path
vs torchvision's per-sample DataLoader, every norm layer vs nn.BatchNorm2d, the normalized LSTM cells vs nn.LSTM,
NCHW vs channels_last for the conv nets, and the cost/accuracy trade-off of every norm for the CIFAR-10 CNN.

    normlab bench                     # everything; writes results/bench/ and results/tradeoff/
    normlab bench --only norms        # one part: runner | data | norms | lstm | channels_last | compile |
                                                # sweep | tradeoff
    normlab bench --device cuda       # the same on a GPU but the CPU sweep part; writes results/bench/cuda/,
                                                # results/tradeoff/cuda/

Timings alternate between the compared variants after a warm-up; medians of the repeats are reported with ratios.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from normlab.argtypes import command_parser, positive_int
from normlab.claims import reference_summary, registry
from normlab.claims.plots import new_figure, save
from normlab.commands import normlab_command
from normlab.config import Config, DataConfig, DatasetConfig, ModelConfig, NormConfig, cadences
from normlab.data import build_data
from normlab.models import build_model, compatible_norms
from normlab.models.cnn import CNNConfig
from normlab.models.inception_lite import InceptionLiteConfig
from normlab.models.lstm import LSTMConfig, NormLSTM
from normlab.models.mlp import MLPConfig
from normlab.norms import build_norm
from normlab.norms.group import groups_for
from normlab.norms.recurrent import build_sequence_norm
from normlab.optim import build_optimizer
from normlab.trainer import cudnn_algorithms, evaluate, train

DATA_ROOT = os.environ.get("NORMLAB_DATA", "./data")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def alternate(fns: dict, repeats: int, device, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each callable, run in turns (a, b, a, b, ...) after `warmup` untimed turns."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


# ---------------------------------------------------------------- 1. runner overhead

RUNNER_CASES = [  # steps on CPU, on CUDA: each case trains for a few seconds, so a run's fixed costs stay small
    ("mlp/MNIST bs60", "mnist", MLPConfig(activation="sigmoid"), 60, (1000, 1000)),
    ("cnn/CIFAR-10 bs2", "cifar10", CNNConfig(), 2, (600, 600)),
    ("cnn/CIFAR-10 bs128", "cifar10", CNNConfig(), 128, (60, 600)),
    ("lstm/MNIST bs64", "mnist", LSTMConfig(), 64, (200, 200)),
]


def plain_loop(cfg: Config, data, steps: int) -> None:
    """The minimal hand-written loop: same model, tensors, optimizer, schedule and evaluation frequency, and
    the same cuDNN algorithm choice (`deterministic`)."""
    with cudnn_algorithms(cfg.deterministic):
        run_plain_loop(cfg, data, steps)


def run_plain_loop(cfg: Config, data, steps: int) -> None:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.norm, data.shape, data.num_classes, cfg.seed).to(data.device)
    optimizer = build_optimizer(model, cfg)
    spe = data.steps_per_epoch(cfg.batch_size)
    cadence = cadences(cfg, steps, data.val_images, data.test_images)  # the trainer's evaluation cadence
    for step in range(steps):
        epoch, index = divmod(step, spe)
        if index == 0:
            order = data.epoch_order(epoch)
        x, y = data.train_batch(order, index, cfg.batch_size, step)
        model.train()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        last = step + 1 == steps
        if (step + 1) % cadence.eval_every == 0 or last:
            if data.val is not None:
                evaluate(model, data, split="val")
            if cadence.test_each_eval or last:
                evaluate(model, data)


def bench_runner(device, repeats: int) -> list[dict]:
    rows = []
    datasets = {}
    for label, dataset, model_cfg, bs, (cpu_steps, cuda_steps) in RUNNER_CASES:
        steps = cpu_steps if device.type == "cpu" else cuda_steps
        if dataset not in datasets:
            data_cfg = DataConfig(root=DATA_ROOT, download=False, augment=dataset == "cifar10", test_subset=2000)
            datasets[dataset] = build_data(dataset, data_cfg, 0, device)
        data = datasets[dataset]
        cfg = Config(
            dataset=DatasetConfig(name=dataset),
            model=model_cfg,
            norm=NormConfig(name="batch"),
            batch_size=bs,
            lr=0.01,
            max_steps=steps,
            progress=False,
            device=device.type,
            data=DataConfig(root=DATA_ROOT, augment=dataset == "cifar10", test_subset=2000),
        )

        def normlab_run(cfg=cfg, data=data):
            with tempfile.TemporaryDirectory() as d:
                train(cfg, Path(d), data=data)

        t = alternate(
            {"normlab": normlab_run, "plain": lambda cfg=cfg, data=data: plain_loop(cfg, data, cfg.max_steps)},
            repeats,
            device,
        )
        rows.append(
            {
                "case": label,
                "steps": steps,
                "normlab_steps_per_s": steps / t["normlab"],
                "plain_steps_per_s": steps / t["plain"],
                "ratio": t["plain"] / t["normlab"],
            }
        )
        print(
            f"runner  {label:22s} normlab {steps / t['normlab']:8.1f} steps/s  plain {steps / t['plain']:8.1f}  "
            f"ratio {t['plain'] / t['normlab']:.3f}",
            flush=True,
        )
    return rows


# ---------------------------------------------------------------- 2. data path


def bench_data(device, repeats: int) -> list[dict]:
    import torchvision
    from torchvision import transforms

    class CIFAR10Local(torchvision.datasets.CIFAR10):
        def _check_integrity(self):  # the shared copy's placeholder file names fail torchvision's md5 check
            return True

    rows = []
    for name, bs in (("mnist", 128), ("cifar10", 128)):
        data = build_data(name, DataConfig(root=DATA_ROOT, download=False, augment=name == "cifar10"), 0, device)
        mean: tuple[float, ...] = (0.1307,)
        std: tuple[float, ...] = (0.3081,)
        if name == "cifar10":
            mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
            tf = transforms.Compose(
                [
                    transforms.RandomCrop(32, padding=4),
                    transforms.RandomHorizontalFlip(),
                    transforms.ToTensor(),
                    transforms.Normalize(mean, std),
                ]
            )
            dataset = CIFAR10Local(DATA_ROOT, train=True, download=False, transform=tf)
        else:
            tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
            dataset = torchvision.datasets.MNIST(DATA_ROOT, train=True, download=False, transform=tf)
        loader: torch.utils.data.DataLoader = torch.utils.data.DataLoader(
            dataset, batch_size=bs, shuffle=True, drop_last=True, num_workers=0
        )

        def normlab_epoch(data=data, bs=bs):
            order = data.epoch_order(0)
            for i in range(data.steps_per_epoch(bs)):
                x, _ = data.train_batch(order, i, bs, i)
            sync(device)

        def torchvision_epoch(loader=loader):
            for x, _ in loader:
                x.to(device)

        t = alternate({"normlab": normlab_epoch, "torchvision": torchvision_epoch}, repeats, device, warmup=0)
        rows.append(
            {
                "dataset": name,
                "batch_size": bs,
                "normlab_s": t["normlab"],
                "torchvision_s": t["torchvision"],
                "speedup": t["torchvision"] / t["normlab"],
            }
        )
        print(
            f"data    {name:8s} one epoch: normlab {t['normlab']:.2f} s  torchvision DataLoader "
            f"{t['torchvision']:.2f} s  speedup {t['torchvision'] / t['normlab']:.0f}x",
            flush=True,
        )
    return rows


# ---------------------------------------------------------------- 3. norm layers and LSTM cells

CNN_SHAPES = ((32, 32, 32), (64, 16, 16), (128, 8, 8), (128, 8, 8))  # the CNN's four norm inputs (C, H, W)
NORM_NAMES = [n for n in compatible_norms("cnn") if n not in ("none", "weight")]


# the torch module each of these normlab norms is (targets: within 1.1x of it)
TORCH_TWINS = {
    "batch": ("torch BatchNorm2d", nn.BatchNorm2d),
    "group": ("torch GroupNorm", lambda c: nn.GroupNorm(groups_for(c), c)),
    "layer": ("torch GroupNorm(1)", lambda c: nn.GroupNorm(1, c)),
    "instance": ("torch InstanceNorm2d", lambda c: nn.InstanceNorm2d(c, affine=True)),
}


NATIVE_NORMS = ("batch_instance", "switchable")  # the norms with compiled CPU kernels (norms.native)


def python_path(module: nn.Module) -> nn.Module:
    """The module with its compiled CPU kernels (norms.native) switched off."""
    module.use_native = False  # type: ignore[assignment]  # a plain attribute of normlab's norm modules
    return module


def bench_norms(device, repeats: int) -> list[dict]:
    """Forward + backward (with a random upstream gradient, as in training) over the CNN's four norm inputs."""
    rows = []
    for bs, passes in ((2, 16), (32, 2), (128, 1)):  # passes per timing: each timing spans a few ms
        xs = [torch.randn(bs, *s, device=device, requires_grad=True) for s in CNN_SHAPES]
        grads = [torch.randn(bs, *s, device=device) for s in CNN_SHAPES]

        def step_fn(make, xs=xs, grads=grads, passes=passes):
            layers = [make(s[0]).to(device) for s in CNN_SHAPES]

            def run():
                for _ in range(passes):
                    for layer, x, g in zip(layers, xs, grads):
                        layer(x).backward(g)

            return run

        fns = {twin: step_fn(make) for twin, make in TORCH_TWINS.values()}
        for name in NORM_NAMES:
            fns[name] = step_fn(lambda c, name=name: build_norm(name, c, "2d"))
        if device.type == "cpu":  # beside them, their Python Functions: what runs without the compiled kernels
            for name in NATIVE_NORMS:
                fns[f"{name} (Python)"] = step_fn(lambda c, name=name: python_path(build_norm(name, c, "2d")))
        t = alternate(fns, repeats * 5, device, warmup=3)
        base = t["torch BatchNorm2d"]
        for name, seconds in t.items():
            row = {"batch_size": bs, "norm": name, "ms": 1000 * seconds / passes, "ratio_to_bn": seconds / base}
            if name in TORCH_TWINS:
                row["ratio_to_torch_twin"] = seconds / t[TORCH_TWINS[name][0]]
            rows.append(row)
        print(f"norms   bs{bs:<4d}" + "  ".join(f"{n} {v / base:.2f}x" for n, v in t.items()), flush=True)
    return rows


def bench_lstm(device, repeats: int) -> list[dict]:
    """Forward+backward over a 28-step sequence (MNIST rows), hidden 100, batch 64: time per step vs nn.LSTM."""
    x = torch.randn(64, 28, 28, device=device)
    ref = nn.LSTM(28, 100, batch_first=True).to(device)
    cells: dict[str, nn.Module] = {
        name: NormLSTM(28, 100, 28, lambda f, steps, name=name: build_sequence_norm(name, f, steps)).to(device)
        for name in ("layer", "batch")
    }
    if device.type == "cpu":  # beside them, the loop of torch ops: what runs without the compiled step
        for name in ("layer", "batch"):
            cells[f"{name}-LSTM (Python)"] = python_path(copy.deepcopy(cells[name]))
    fns = {"nn.LSTM": lambda: ref(x)[0][:, -1].sum().backward()}
    for name, cell in cells.items():
        fns[name if "(" in name else f"{name}-LSTM"] = lambda cell=cell: cell(x).sum().backward()  # type: ignore[misc]
    t = alternate(fns, repeats * 5, device, warmup=3)
    rows = [{"cell": k, "ms_per_step": 1000 * v / 28, "ratio_to_nn_lstm": v / t["nn.LSTM"]} for k, v in t.items()]
    print("lstm    " + "  ".join(f"{r['cell']} {r['ratio_to_nn_lstm']:.2f}x" for r in rows), flush=True)
    return rows


def training_steps(
    model_cfg: ModelConfig, norm: str, x, y, steps: int, device, memory_format=torch.contiguous_format, compile=False
):
    """A callable that runs `steps` SGD steps of a freshly built conv net on the fixed CIFAR-10-shaped batch
    (`compile`: the model under torch.compile, as the trainer's compile=true)."""
    torch.manual_seed(0)
    model = build_model(model_cfg, NormConfig(name=norm), (3, 32, 32), 10).to(device).to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = x.contiguous(memory_format=memory_format)
    forward = torch.compile(model) if compile else model

    def run():
        for _ in range(steps):
            loss = F.cross_entropy(forward(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return run


def bench_channels_last(device, repeats: int) -> list[dict]:
    """A CIFAR-10 training step of the conv nets in NCHW vs channels_last (`channels_last=true`): with BN at
    batch 32 and 128, and for the CNN with every norm at batch 32."""
    models = {"cnn": CNNConfig(), "inception_lite": InceptionLiteConfig(width=32)}  # both 32 wide, as measured
    cases = [(m, "batch", bs) for m in models for bs in (32, 128)]
    cases += [("cnn", norm, 32) for norm in compatible_norms("cnn") if norm != "batch"]
    rows = []
    for model_name, norm, bs in cases:
        x = torch.randn(bs, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (bs,), device=device)
        fns = {}
        for layout in ("NCHW", "channels_last"):
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            fns[layout] = training_steps(models[model_name], norm, x, y, 3, device, fmt)
        t = alternate(fns, repeats, device, warmup=1)
        rows.append(
            {
                "case": f"{model_name} {norm} bs{bs}",
                "nchw_ms": 1000 * t["NCHW"] / 3,
                "channels_last_ms": 1000 * t["channels_last"] / 3,
                "speedup": t["NCHW"] / t["channels_last"],
            }
        )
        print(f"layout  {rows[-1]['case']}: channels_last {rows[-1]['speedup']:.2f}x NCHW's speed", flush=True)
    return rows


def bench_compile(device, repeats: int) -> list[dict]:
    """A CIFAR-10 training step of the CNN (width 16) eager vs under `torch.compile` (`compile=true`; inductor),
    with BN and with the norms whose compiled kernels are custom ops (traced as one node each, not a fall-back
    to Python), at batch 2 and 32, in NCHW and in channels_last (what `channels_last=auto` gives these runs).
    The first call of each compiled model, compilation included, is the warm-up: compiled from scratch (dynamo
    reset, a fresh inductor cache), as a first run compiles."""
    from torch._inductor.utils import fresh_cache

    rows = []
    for norm in ("batch", *NATIVE_NORMS):
        for bs in (2, 32):
            x = torch.randn(bs, 3, 32, 32, device=device)
            y = torch.randint(0, 10, (bs,), device=device)
            for layout, fmt in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
                eager = training_steps(CNNConfig(width=16), norm, x, y, 5, device, fmt)
                compiled = training_steps(CNNConfig(width=16), norm, x, y, 5, device, fmt, compile=True)
                torch._dynamo.reset()  # (else 12 models of one forward hit dynamo's recompile limit and run eager)
                with fresh_cache():
                    start = time.perf_counter()
                    compiled()  # compiles forward and backward
                    compile_s = time.perf_counter() - start
                t = alternate({"eager": eager, "compiled": compiled}, repeats, device, warmup=1)
                rows.append(
                    {
                        "case": f"cnn {norm} bs{bs}",
                        "layout": layout,
                        "eager_ms": 1000 * t["eager"] / 5,
                        "compiled_ms": 1000 * t["compiled"] / 5,
                        "speedup": t["eager"] / t["compiled"],
                        "compile_s": compile_s,
                    }
                )
                print(
                    f"compile {rows[-1]['case']} {layout}: compiled {rows[-1]['speedup']:.2f}x eager's speed "
                    f"(compiling took {compile_s:.0f} s)",
                    flush=True,
                )
    return rows


# ---------------------------------------------------------------- 4. trade-off


def bench_tradeoff(device, repeats: int, results: Path, out: Path) -> tuple[list[dict], str]:
    """ms per CNN training step on CIFAR-10 (batch 32, width 16 as in the small-batch study) per norm, beside
    that norm's test accuracy at batch 32 and batch 2 from bn_small_batch's reference report (the one the answers
    cite)."""
    small_batch = reference_summary(results, "bn_small_batch", registry()["bn_small_batch"].reference)[0] or {}
    profile, errors = small_batch.get("profile"), small_batch.get("numbers", {})
    x = torch.randn(32, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (32,), device=device)
    fns = {}
    for name in compatible_norms("cnn"):
        fns[name] = training_steps(CNNConfig(width=16), name, x, y, 5, device)
    t = alternate(fns, repeats, device, warmup=1)
    rows = []
    for name, seconds in t.items():
        row: dict[str, Any] = {"norm": name, "ms_per_step": 1000 * seconds / 5, "ratio_to_bn": t[name] / t["batch"]}
        for bs in (32, 2):
            err = errors.get(name, {}).get(f"err_bs{bs}")
            row[f"test_acc_bs{bs}"] = None if err is None else 1 - err / 100
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = new_figure(1, 2, figsize=(10, 4))
    for ax, bs in zip(axes, (32, 2)):
        for r in rows:
            if r[f"test_acc_bs{bs}"] is not None:
                ax.scatter(r["ms_per_step"], 100 * r[f"test_acc_bs{bs}"])
                ax.annotate(r["norm"], (r["ms_per_step"], 100 * r[f"test_acc_bs{bs}"]), fontsize=8)
        ax.set_xlabel("ms per training step (CNN width 16, CIFAR-10, batch 32)")
        ax.set_ylabel(f"test accuracy % at batch {bs}")
        ax.set_title(f"Cost vs accuracy (bn_small_batch {profile}, batch {bs})")
        ax.grid(alpha=0.3)
    save(fig, out / "tradeoff.png")
    lines = [
        f"Accuracies: `results/bn_small_batch`'s reference ({profile} profile, mean over its seeds). Timings: this "
        "benchmark.\n"
        if profile
        else "Accuracies: none yet (`normlab reproduce bn_small_batch` makes them).\n",
        "| norm | ms / step | × BN | test acc % at batch 32 | test acc % at batch 2 |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        accs = ["n/a" if r[k] is None else f"{100 * r[k]:.1f}" for k in ("test_acc_bs32", "test_acc_bs2")]
        lines.append(f"| {r['norm']} | {r['ms_per_step']:.2f} | {r['ratio_to_bn']:.2f} | {accs[0]} | {accs[1]} |")
    table = "\n".join(lines)
    return rows, table


PARTS = ["runner", "data", "norms", "lstm", "channels_last", "compile", "sweep", "tradeoff", "measurements", "cadence"]


# ---------------------------------------------------------------- 9. the chosen evaluation cadence

CADENCE_CASES = [  # (label, dataset, model, norm, batch, the run's steps): one epoch at batch 2, the card's command
    ("mlp/MNIST group bs2 (the card's run)", "mnist", MLPConfig(), "group", 2, 27_500),
    ("cnn/CIFAR-10 group bs2", "cifar10", CNNConfig(), "group", 2, 22_500),
]


def bench_cadence(device, repeats: int, steps: int = 300) -> list[dict]:
    """eval_every=null on a whole epoch at batch 2, from its parts: a training step's time (runs of `steps` and
    2 × `steps` steps), one
    evaluation of the validation split, one of the test set. For the cadence as chosen now (validation at each
    evaluation, the test set at the end) and before (both at each): evaluations, when the first comes, their share
    of the run."""
    from normlab.config import evaluations

    rows = []
    for label, dataset, model_cfg, norm, bs, total in CADENCE_CASES:
        data = build_data(dataset, DataConfig(root=DATA_ROOT, download=False), 0, device)
        cfg = Config(
            dataset=DatasetConfig(name=dataset),
            model=model_cfg,
            norm=NormConfig(name=norm),
            batch_size=bs,
            max_steps=steps,
            eval_every=10**6,
            progress=False,
            device=device.type,
        )
        model = build_model(cfg.model, cfg.norm, data.shape, data.num_classes, cfg.seed).to(data.device)

        def train_steps(cfg, data=data):
            with tempfile.TemporaryDirectory() as d:
                train(cfg, Path(d), data=data)

        longer = dataclasses.replace(cfg, max_steps=2 * steps)
        t = alternate(
            {
                "train": functools.partial(train_steps, cfg),
                "train twice as long": functools.partial(train_steps, longer),
                "val": lambda model=model, data=data: evaluate(model, data, split="val"),
                "test": lambda model=model, data=data: evaluate(model, data),
            },
            repeats,
            device,
        )
        # a step's time: the difference of two runs (their setup, save and evaluation at the end cancel)
        step_s, val_s, test_s = (t["train twice as long"] - t["train"]) / steps, t["val"], t["test"]
        row = {"case": label, "ms_per_step": 1000 * step_s, "val_s": val_s, "test_s": test_s}
        for name, each, once, each_s, once_s in (
            ("now", data.val_images, data.test_images, val_s, test_s),
            ("before", 0, data.val_images + data.test_images, val_s + test_s, 0.0),
        ):
            n = evaluations(cfg, total, each, once)
            every = -(-total // n)
            evaluating = n * each_s + once_s
            row[name] = {
                "evaluations": n,
                "first_s": every * step_s + each_s,
                "share": evaluating / (total * step_s + evaluating),
            }
        rows.append(row)
        print(f"cadence {label:38s} {row['now']} (before {row['before']})", flush=True)
    return rows


def cadence_table(rows: list[dict]) -> str:
    def cell(r, key, fmt):
        return f"{fmt(r['before'][key])} → {fmt(r['now'][key])}"

    return "\n".join(
        [
            "| case | ms/step | validation s | test s | evaluations | first point | share of the run |",
            "|---|---|---|---|---|---|---|",
            *[
                f"| {r['case']} | {r['ms_per_step']:.2f} | {r['val_s']:.2f} | {r['test_s']:.2f} | "
                f"{cell(r, 'evaluations', str)} | {cell(r, 'first_s', lambda v: f'{v:.0f} s')} | "
                f"{cell(r, 'share', lambda v: f'{100 * v:.1f}%')} |"
                for r in rows
            ],
        ]
    )


# ---------------------------------------------------------------- 8. what landscape and eval_train cost

MEASURED_CASES = [  # (label, dataset, model, batch, steps, eval_every): bn_smoothness's and bn_regularization's runs
    ("mlp/MNIST bs60, eval every 100", "mnist", MLPConfig(activation="relu"), 60, 1000, 100),
    ("cnn/CIFAR-10 bs128, eval every 50", "cifar10", CNNConfig(), 128, 100, 50),
]
MEASURED = {"off": (), "landscape": ("landscape",), "eval_train 5000": ("eval_train",)}


def bench_measurements(device, repeats: int) -> list[dict]:
    """A run's time with `landscape=true` and with `eval_train=5000` against the same run without: each is a few
    extra passes per evaluation, so the ratio depends on how often a run evaluates."""
    rows = []
    for label, dataset, model_cfg, bs, steps, every in MEASURED_CASES:
        data_cfg = DataConfig(root=DATA_ROOT, download=False, test_subset=2000)
        data = build_data(dataset, data_cfg, 0, device)
        runs = {}
        for name, keys in MEASURED.items():
            cfg = Config(
                dataset=DatasetConfig(name=dataset),
                model=model_cfg,
                norm=NormConfig(name="batch"),
                batch_size=bs,
                max_steps=steps,
                eval_every=every,
                progress=False,
                device=device.type,
                data=data_cfg,
                landscape="landscape" in keys,
                eval_train=5000 if "eval_train" in keys else 0,
            )

            def run(cfg=cfg, data=data):
                with tempfile.TemporaryDirectory() as d:
                    train(cfg, Path(d), data=data)

            runs[name] = run
        t = alternate(runs, repeats, device)
        rows.append({"case": label, **{f"{k}_s": v for k, v in t.items()}})
        print(f"measure {label:34s} " + "  ".join(f"{k} {v:.2f} s" for k, v in t.items()), flush=True)
    return rows


def measurements_table(rows: list[dict]) -> str:
    names = list(MEASURED)
    return "\n".join(
        [
            "| case | " + " | ".join(f"{n} s" for n in names) + " | landscape × | eval_train × |",
            "|---|" + "---|" * (len(names) + 2),
            *[
                f"| {r['case']} | "
                + " | ".join(f"{r[n + '_s']:.2f}" for n in names)
                + f" | {r['landscape_s'] / r['off_s']:.2f}x | {r['eval_train 5000_s'] / r['off_s']:.2f}x |"
                for r in rows
            ],
        ]
    )


# ---------------------------------------------------------------- 6. whole sweeps: sequential vs parallel jobs

SWEEP = [
    *("dataset=cifar10", "model=cnn", "model.width=16", "norm=batch,group,layer,instance", "data.train_subset=4000"),
    *("data.val_size=500", "data.test_subset=500", "eval_every=100000", "checkpoint_every=0", "progress=false"),
]


def run_sweep(jobs: int, batch_size: int, steps: int) -> float:
    """Wall seconds of SWEEP (4 runs) in a fresh directory: `jobs` at a time, each on cores / jobs threads."""
    cores = os.cpu_count() or 1
    launcher = ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={jobs}"] if jobs > 1 else []
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            *normlab_command("train"),
            "-m",
            *SWEEP,
            f"batch_size={batch_size}",
            f"max_steps={steps}",
            f"hydra.sweep.dir={tmp}",
            *launcher,
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // jobs)), "PYTHONWARNINGS": "ignore"}
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=tmp)
        return time.perf_counter() - start


def bench_sweep(repeats: int) -> list[dict]:
    """The same 4-run sweep run one job at a time on every core vs one job per core on one thread each (Hydra's
    joblib launcher, as reproduce.py runs them): images/s of the whole sweep, start-up included."""
    cores = os.cpu_count() or 1
    rows = []
    for batch_size, steps in ((2, 1500), (32, 300)):
        times: dict[str, list[float]] = {"sequential": [], "parallel": []}
        for _ in range(repeats):  # alternate, so that drifts of a noisy machine hit both
            times["sequential"].append(run_sweep(1, batch_size, steps))
            times["parallel"].append(run_sweep(cores, batch_size, steps))
        seq, par = statistics.median(times["sequential"]), statistics.median(times["parallel"])
        images = 4 * steps * batch_size
        rows.append(
            {
                "batch_size": batch_size,
                "runs": 4,
                "steps": steps,
                "jobs": cores,
                "sequential_s": seq,
                "parallel_s": par,
                "sequential_images_per_s": images / seq,
                "parallel_images_per_s": images / par,
                "speedup": seq / par,
            }
        )
    return rows


def sweep_table(rows: list[dict]) -> str:
    return "\n".join(
        [
            "| batch | runs × steps | sequential s (1 job, all threads) | parallel s (1 job per core, 1 thread) | "
            "images/s seq → par | speedup |",
            "|---|---|---|---|---|---|",
            *[
                f"| {r['batch_size']} | {r['runs']} × {r['steps']} | {r['sequential_s']:.1f} | {r['parallel_s']:.1f} | "
                f"{r['sequential_images_per_s']:.0f} → {r['parallel_images_per_s']:.0f} | {r['speedup']:.2f}x |"
                for r in rows
            ],
        ]
    )


def main(argv=None) -> int:
    parser = command_parser(__doc__)
    parser.add_argument("--only", choices=PARTS)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "error: --device cuda is not allowed here: no CUDA device is available; use --device cpu\n")
    device = torch.device(args.device)
    where = "" if device.type == "cpu" else device.type  # a GPU's numbers beside, not over, the CPU's
    bench, tradeoff = args.results / "bench" / where, args.results / "tradeoff" / where
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
    }
    # the sweep part measures CPU sweeps (one thread per job); on a GPU its jobs would share one device
    parts = [args.only] if args.only else [p for p in PARTS if device.type == "cpu" or p != "sweep"]
    if "runner" in parts:
        out["runner"] = bench_runner(device, args.repeats)
    if "data" in parts:
        out["data"] = bench_data(device, args.repeats)
    if "norms" in parts:
        out["norms"] = bench_norms(device, args.repeats)
    if "lstm" in parts:
        out["lstm"] = bench_lstm(device, args.repeats)
    if "channels_last" in parts:
        out["channels_last"] = bench_channels_last(device, args.repeats)
    if "compile" in parts:
        out["compile"] = bench_compile(device, args.repeats)
    if "sweep" in parts:
        out["sweep"] = bench_sweep(args.repeats)
    if "measurements" in parts:
        out["measurements"] = bench_measurements(device, args.repeats)
    if "cadence" in parts:
        out["cadence"] = bench_cadence(device, args.repeats)
    if "tradeoff" in parts:
        out["tradeoff"], table = bench_tradeoff(device, args.repeats, args.results, tradeoff)
        (tradeoff / "README.md").write_text(
            f"# Cost vs accuracy of each norm ({device.type})\n\n"
            f"Made by `python scripts/bench.py --device {device.type}` (or `--only tradeoff`).\n\n"
            + table
            + "\n\n![tradeoff](tradeoff.png)\n"
        )
    bench.mkdir(parents=True, exist_ok=True)
    name = f"bench{'-' + args.only if args.only else ''}"
    (bench / f"{name}.json").write_text(json.dumps(out, indent=2))
    if not args.only:
        (bench / "README.md").write_text(readme(out, args))
        for part in parts:  # a one-part file is the latest of its part until a whole run measures it again
            (bench / f"bench-{part}.json").unlink(missing_ok=True)
    elif args.only == "measurements":
        (bench / "measurements.md").write_text(
            f"# What landscape=true and eval_train=5000 cost ({out['device']}, {out['machine']})\n\nMade by "
            f"`python scripts/bench.py --only measurements --device {device.type} --repeats {args.repeats}`: the "
            "same run with the measurement off and on, in turns; medians. The run trains identically either way "
            "(tests/test_landscape.py).\n\n" + measurements_table(out["measurements"]) + "\n"
        )
    elif args.only == "cadence":
        (bench / "cadence.md").write_text(
            f"# The chosen evaluation cadence ({out['device']}, {out['machine']})\n\nMade by `python scripts/bench.py "
            f"--only cadence --device {device.type} --repeats {args.repeats}` (torch threads: {torch.get_num_threads()}"
            "): eval_every=null on one epoch at batch "
            "2, from its parts (a training step, one evaluation of the 5,000 validation images, one of the 10,000 "
            "test images; medians, in turns), before → now: each evaluation read both splits before; now the "
            "validation split, and the test set once, at the end (docs/running.md).\n\n"
            + cadence_table(out["cadence"])
            + "\n"
        )
    elif args.only == "sweep":
        (bench / "sweep.md").write_text(
            f"# Whole sweeps: sequential vs parallel jobs ({out['machine']})\n\nMade by `python scripts/bench.py "
            f"--only sweep --repeats {args.repeats}`: the CIFAR-10 CNN (width 16), 4 norms, each a separate run; "
            "medians, alternating. Target: >= 1.5x at batch 2.\n\n" + sweep_table(out["sweep"]) + "\n"
        )
    return 0


def readme(out: dict, args) -> str:
    """results/bench/README.md from the measurements."""
    parts = [
        f"# Benchmarks ({out['device']})\n",
        f"Made by `python scripts/bench.py --device {out['device']} --repeats {args.repeats}` on {out['machine']}, "
        f"torch {out['torch']}, {out['threads']} threads. Variants alternate after a warm-up; medians of the "
        "repeats. Raw numbers: `bench.json`.\n",
        "## Runner overhead (normlab's trainer vs a plain PyTorch loop)\n",
        "Same model, in-memory tensors, optimizer and evaluation frequency (every 200 steps on 2,000 test images); "
        "normlab adds checkpoints, TensorBoard, metrics.jsonl, summary.json. Target ≥ 0.95.\n",
        "| case | normlab steps/s | plain steps/s | ratio |\n|---|---|---|---|",
        *[
            f"| {r['case']} | {r['normlab_steps_per_s']:.1f} | {r['plain_steps_per_s']:.1f} | {r['ratio']:.3f} |"
            for r in out.get("runner", [])
        ],
        "\n## Data path (one training epoch of batches, 128 per batch)\n",
        "Target ≥ 20x over torchvision's per-sample DataLoader (ToTensor + Normalize; crop + flip for CIFAR-10).\n",
        "| dataset | normlab s | torchvision s | speedup |\n|---|---|---|---|",
        *[
            f"| {r['dataset']} | {r['normlab_s']:.3f} | {r['torchvision_s']:.2f} | {r['speedup']:.0f}x |"
            for r in out.get("data", [])
        ],
        "\n## Norm layers (forward + backward on the CNN's four activation shapes, ratio to nn.BatchNorm2d)\n",
        "A random upstream gradient, as in training. Target: batch_instance and switchable ≤ 2.0x.\n",
    ]
    norms = out.get("norms", [])
    names = list(dict.fromkeys(r["norm"] for r in norms))
    batch_sizes = sorted({r["batch_size"] for r in norms})
    cell = {(r["batch_size"], r["norm"]): r for r in norms}
    parts.append("| batch | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for bs in batch_sizes:
        parts.append(
            f"| {bs} | "
            + " | ".join(f"{cell[bs, n]['ratio_to_bn']:.2f}x ({cell[bs, n]['ms']:.2f} ms)" for n in names)
            + " |"
        )
    twins = [n for n in names if (batch_sizes[0], n) in cell and "ratio_to_torch_twin" in cell[batch_sizes[0], n]]
    parts += [
        "\nThe norms that are torch's modules, against the module itself (target ≤ 1.1x):\n",
        "| norm | torch module | " + " | ".join(f"batch {bs}" for bs in batch_sizes) + " |",
        "|---|---|" + "---|" * len(batch_sizes),
        *[
            f"| {n} | {TORCH_TWINS[n][0].removeprefix('torch ')} | "
            + " | ".join(f"{cell[bs, n]['ratio_to_torch_twin']:.2f}x" for bs in batch_sizes)
            + " |"
            for n in twins
        ],
    ]
    parts += [
        "\n## LSTM cells (28-step sequence, hidden 100, batch 64, forward + backward)\n",
        "Target: LN-LSTM and BN-LSTM ≤ 3x nn.LSTM.\n",
        "| cell | ms per step | × nn.LSTM |\n|---|---|---|",
        *[f"| {r['cell']} | {r['ms_per_step']:.3f} | {r['ratio_to_nn_lstm']:.2f} |" for r in out.get("lstm", [])],
        "\n## channels_last (a CIFAR-10 training step of the conv nets, `channels_last=true` vs NCHW)\n",
        "| case | NCHW ms | channels_last ms | speedup |\n|---|---|---|---|",
        *[
            f"| {r['case']} | {r['nchw_ms']:.1f} | {r['channels_last_ms']:.1f} | {r['speedup']:.2f}x |"
            for r in out.get("channels_last", [])
        ],
        "\n## torch.compile (a CIFAR-10 training step of the CNN, width 16, `compile=true` vs eager)\n",
        "| case | layout | eager ms | compiled ms | speedup | compiling s |\n|---|---|---|---|---|---|",
        *[
            f"| {r['case']} | {r['layout']} | {r['eager_ms']:.1f} | {r['compiled_ms']:.1f} | "
            f"{r['speedup']:.2f}x | {r['compile_s']:.0f} |"
            for r in out.get("compile", [])
        ],
        "\n## Trade-off\n\nSee [results/tradeoff](../tradeoff/README.md).\n",
    ]
    if out.get("sweep"):
        parts += ["\n## Whole sweeps (sequential vs parallel jobs)\n", sweep_table(out["sweep"])]
    if out.get("measurements"):
        parts += [
            "\n## landscape=true and eval_train=5000 (a run's time, on / off)\n",
            measurements_table(out["measurements"]),
        ]
    if out.get("cadence"):
        parts += [
            "\n## eval_every=null, an epoch at batch 2 (before → now: the test set at each evaluation → at the end)\n",
            cadence_table(out["cadence"]),
        ]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
