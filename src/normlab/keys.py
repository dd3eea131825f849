"""Every top-level, data.* and model.* config key, documented once: the tables of docs/running.md and the key lines of
`python run.py --help` (conf/hydra/help/normlab.yaml) are written from here by `python scripts/keys.py --write`,
and tests/test_docs.py fails where they, or conf/config.yaml's keys and defaults, no longer agree with it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    names: tuple[str, ...]  # one row of the table (`compile`, `amp` share one)
    meaning: str  # markdown, for docs/running.md
    brief: str = ""  # plain text, for --help ("": only in the docs)
    default: str | None = None  # shown instead of conf/config.yaml's value (a path, a per-dataset value)


KEYS = (
    Key(
        ("batch_size",),
        "training batch (the last incomplete batch of an epoch is dropped)",
        brief="images per step (per step across all processes under torchrun)",
    ),
    Key(
        ("lr",),
        "base learning rate",
        brief="learning rate (optimizer=sgd|adam|rmsprop; scheduler=constant|step|cosine)",
    ),
    Key(
        ("lr_batch_size",),
        (
            "the batch size `lr` is given for: the run uses lr · batch_size / lr_batch_size, the linear scaling "
            "rule the GN paper follows (Goyal et al. 2017). Sweeping `batch_size` at one `lr` gives small batches"
            " too large a step (batch 2 at lr 0.1 for 1,000 steps ends near chance): `-m batch_size=2,8,32 lr=0.1"
            " lr_batch_size=32` runs lr 0.00625, 0.025, 0.1. null: `lr` as given"
        ),
        brief=(
            "lr is for this batch size: lr * batch_size / lr_batch_size (linear scaling rule);\nsweeping "
            "batch_size at one lr, small batches get too large a step (batch 2 at\nlr 0.1 ends near chance): try "
            "lr=0.1 lr_batch_size=32, as the GN paper does"
        ),
    ),
    Key(
        ("epochs",),
        "passes over the training set when `max_steps` is null",
        brief="run length: full passes over the training images (when max_steps is null)",
    ),
    Key(
        ("max_steps",),
        "training steps (overrides `epochs`)",
        brief="run length in steps (overrides epochs)",
    ),
    Key(
        ("seed",),
        (
            "model init, data order, augmentation; same seed, same thread count and same CPU ⇒ identical "
            "`metrics.jsonl` (float sums depend on the threads: a seed-0 run gave 0.1421 on 2 threads and 0.1010 "
            "on 1; `summary.json` records `threads` and `cpu`)"
        ),
        brief="model init, data order, augmentation (same seed + same threads => same numbers)",
    ),
    Key(
        ("device",),
        "`auto` (CUDA when present) \\| `cpu` \\| `cuda`",
        brief="auto | cpu | cuda",
    ),
    Key(
        ("eval_every",),
        (
            "steps between validation + test evaluations (and one at the end); null: at most 20 per run, fewer "
            "where they would take over a fifth of its time, each on the validation split, the test set only at "
            "the end"
        ),
        brief="steps between validation + test evaluations (null: <= 20 within 1/5 of the run, test at the end)",
    ),
    Key(
        ("log_every",),
        (
            "steps between training loss/accuracy points in TensorBoard; null: about 10 per evaluation (changes "
            "no result)"
        ),
        brief="steps between TensorBoard training-curve points (null: ~10 per evaluation)",
    ),
    Key(
        ("progress",),
        "tqdm progress bar",
    ),
    Key(
        ("checkpoint_every",),
        "steps between checkpoints (and one at the end); 0 = only at the end",
    ),
    Key(
        ("resume",),
        "re-running a command continues from its run directory's checkpoint",
        brief="re-running a command resumes or skips its run",
    ),
    Key(
        ("overwrite",),
        "discard what the run directory holds and start over",
        brief="true starts the run over",
    ),
    Key(
        ("data.root",),
        "folder with torchvision's layouts (`MNIST/raw/`, `cifar-10-batches-py/`)",
        default="`$NORMLAB_DATA` or `./data`",
    ),
    Key(
        ("data.download",),
        "download with torchvision when files are missing (only then)",
    ),
    Key(
        ("data.train_subset", "data.test_subset"),
        "use the first N images (of the training images left after the validation split)",
    ),
    Key(
        ("data.val_size",),
        "training images held out for validation (model selection), the same for every seed; 0 = none",
        brief="training images held out for validation: model selection reads it, never the test set",
    ),
    Key(
        ("data.augment",),
        "random crop (pad 4) + horizontal flip; on for cifar10",
        default="per dataset",
    ),
    Key(
        ("data.standardize",),
        (
            "subtract the dataset's per-channel mean and divide by its std; false: pixels in [0, 1] as they are "
            "(the BN paper's MNIST)"
        ),
    ),
    Key(
        ("grad_clip",),
        "clip the gradient norm",
    ),
    Key(
        ("landscape",),
        (
            "at each evaluation, Santurkar et al.'s Fig. 4 along the current gradient g of the step's batch: the "
            "range of the loss over steps of 0.25-4 lr along -g, the largest change of the gradient, that change "
            "over the step's length (effective β-smoothness) and ‖g‖, as `landscape` in metrics.jsonl and "
            "`landscape/*` in TensorBoard (6 forward/backward passes an evaluation: `scripts/bench.py "
            "--only measurements`); the run trains exactly as without it"
        ),
        brief="log the loss and gradient along the current gradient at each evaluation",
    ),
    Key(
        ("eval_train",),
        (
            "at each evaluation, the first `eval_train` training images in eval mode: `trainset_loss`, "
            "`trainset_acc` (the generalization gap's other side: the training curve is measured in training "
            "mode, with BN's batch statistics); 0: none"
        ),
        brief="training images evaluated in eval mode at each evaluation (0: none)",
    ),
    Key(
        ("channels_last",),
        (
            "NHWC memory layout: auto = on for conv nets (the models whose norms see (N, C, H, W): cnn, resnet, "
            "inception_lite, convpool) with every norm but those that declare themselves slower in NHWC "
            "(instance), where it is faster here (see Speed); resolved when the run starts and saved as true or "
            "false. bin_gates, bn_small_batch, in_contrast, sn_switches and the distributed study pin false, as "
            "their committed runs were made"
        ),
    ),
    Key(
        ("compile", "amp"),
        "speed options (see Speed)",
    ),
    Key(
        ("deterministic",),
        (
            "CUDA: cuDNN's deterministic algorithms, so the same seed gives the same numbers; `false` lets cuDNN "
            "autotune for speed"
        ),
    ),
)


# model.* keys: each model reads those of its config class (models/<name>.py), which its conf/model/<name>.yaml lists
# with the same defaults (shown per model)
MODEL_KEYS = (
    Key(("model.activation",), "relu \\| sigmoid \\| tanh \\| leaky_relu (slope 0.1)"),
    Key(("model.hidden",), "the hidden layers' widths (the BN paper: 3 layers of 100 sigmoid units)"),
    Key(
        ("model.init_std",),
        'weights drawn from N(0, std²), biases 0, the BN paper\'s "small random Gaussian values"; null keeps '
        "torch's init",
    ),
    Key(
        ("model.norm_logits",),
        "the norm on the classifier's outputs too, as the LN paper's BN baseline (\"applied to all layers\"); a config "
        "can tie it to the arm with `${normlab.eq:${norm.name},batch}`",
    ),
    Key(("model.width",), "channels of the first stage (resnet: stages of width, 2·width, 4·width)"),
    Key(("model.depth",), "layers, 6n + 2: 20 \\| 32 \\| 44 \\| 56 \\| 110 (He et al. 2016)"),
    Key(
        ("model.zero_init_residual",),
        "γ = 0 in each residual block's last norm layer, so that every block starts as the identity (Goyal et al. "
        "2017; torchvision's `zero_init_residual`)",
    ),
    Key(("model.hidden_size",), "the LSTM's hidden units"),
    Key(("model.sequence",), "`rows` (28 steps of 28 pixels) or `pixel` (one pixel per step)"),
    Key(("model.downsample",), "average-pool the image by this factor first (2 reads MNIST as 196 pixels)"),
    Key(("model.permute",), "a fixed permutation of the sequence, drawn from the seed (permuted pixel MNIST)"),
    Key(
        ("model.h0_noise",),
        "std of Gaussian noise added to the initial hidden state in training (the recurrent BN paper: 0.1)",
    ),
    Key(
        ("model.recurrent_init",),
        "`uniform` (nn.LSTM's); `orthogonal`: each gate's block of W_x and W_h orthogonal; `identity`: W_h's blocks "
        "the identity, W_x's orthogonal (the recurrent BN paper)",
    ),
)


def shown_default(key: Key, config: dict) -> str:
    """The key's default as the docs show it: `default`, else the composed config's value (null, true, 0.1)."""
    if key.default is not None:
        return key.default
    value = config
    for part in key.names[0].split("."):
        value = value[part]
    return shown_value(value)


def shown_value(value) -> str:
    """A config value as YAML writes it: null, true, [100, 100, 100], 0.1."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown_value(v) for v in value) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def docs_table(config: dict) -> str:
    """docs/running.md's table of keys, defaults from `config` (conf/config.yaml composed)."""
    rows = [f"| {', '.join(f'`{n}`' for n in k.names)} | {shown_default(k, config)} | {k.meaning} |" for k in KEYS]
    return "\n".join(["| key | default | meaning |", "|---|---|---|", *rows])


def help_lines(config: dict) -> str:
    """The key lines of `python run.py --help`: `key=default` and its brief, for the keys that have one."""
    lines = []
    for k in KEYS:
        if k.brief:
            first, *rest = k.brief.split("\n")
            lines.append(f"    {f'{k.names[0]}={shown_default(k, config)}':<27}{first}".rstrip())
            lines += [" " * 31 + line for line in rest]
    return "\n".join(lines)


def model_table(defaults: dict[str, dict]) -> str:
    """docs/running.md's table of model keys: which models read each and their defaults (`defaults`: model name ->
    its conf/model/<name>.yaml)."""
    rows = []
    for k in MODEL_KEYS:
        key = k.names[0].split(".", 1)[1]
        values = ", ".join(f"{m} {shown_value(v[key])}" for m, v in sorted(defaults.items()) if key in v)
        rows.append(f"| `{k.names[0]}` | {values} | {k.meaning} |")
    return "\n".join(["| key | models and defaults | meaning |", "|---|---|---|", *rows])
