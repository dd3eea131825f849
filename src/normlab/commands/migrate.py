"""Bring run records saved by an earlier normlab up to today's config, in place, so that they are resumed, skipped
and reported as the runs they are (a saved config that lacks a key is otherwise refused: normlab cannot tell what
the run meant by it). One-off; every step is idempotent, so running it twice changes nothing more.

    normlab migrate runs results        # every summary.json, last.pt and prev.pt below them

The steps, in the order normlab changed:
- keys added since runs were first saved get the value that describes a run saved before them (KEYS_ADDED: a run
  saved before the validation split trained on every training image, so its data.val_size is 0, not 5000);
- dataset.augment, a copy of data.augment's default, is gone (the dataset's conf file sets data.augment);
- every run saved every model's keys (model.hidden of the MLP in an LSTM's run); a run now saves the keys its
  model reads (its registry entry's config), so the others are dropped;
- bn_small_batch and sn_switches gave their lr already scaled to the batch (lr = 0.1 · batch_size / 32, the
  `${normlab.scale}` resolver); they now give lr 0.1 for batch 32 (`lr_batch_size: 32`), as every other config
  does. The lr a run trains at is the same float either way.
"""

import sys
from pathlib import Path

from normlab.argtypes import command_parser, existing_dir
from normlab.cli import lr_used
from normlab.models import MODELS
from normlab.runlog import DamagedCheckpoint, read_checkpoint, read_json, save_checkpoint, write_json

KEYS_ADDED = {
    "data": {"val_size": 0, "standardize": True},  # val_size: before the split, every training image trained
    # before model=resnet, model=custom, the lstm's pooling and init, the mlp's Gaussian init and norm on the logits
    "model": {
        "depth": 20,
        "target": None,
        "downsample": 1,
        "init_std": None,
        "norm_logits": False,
        "recurrent_init": "uniform",
    },
    "dataset": {"target": None},  # before dataset=custom
    "lr_batch_size": None,  # before the linear scaling option: lr as given
    "optimizer": {"decay_all": False},  # before optimizer.decay_all: norm parameters and biases never decayed
}
KEYS_REMOVED = {"dataset": ("augment",)}  # dataset.augment: data.augment's default, copied
LR_GIVEN_FOR = 32  # the batch size bn_small_batch's and sn_switches' lr is given for (the GN paper's rule)
SCALED_EXPERIMENTS = ("bn_small_batch", "sn_switches")  # and their profiles: bn_small_batch_cpu, ...
RECORDS = ("summary.json", "last.pt", "prev.pt")


def add_keys(config: dict) -> dict:
    """`config` with KEYS_ADDED's value for every key it predates."""
    config = {**config}
    for key, values in KEYS_ADDED.items():
        if isinstance(values, dict) and isinstance(config.get(key), dict):  # keys of a group
            config[key] = {**values, **config[key]}
        elif not isinstance(values, dict):  # a top-level key
            config.setdefault(key, values)
    return config


def drop_keys(config: dict) -> dict:
    """`config` without the KEYS_REMOVED."""
    return {
        k: {kk: vv for kk, vv in v.items() if kk not in KEYS_REMOVED[k]}
        if k in KEYS_REMOVED and isinstance(v, dict)
        else v
        for k, v in config.items()
    }


def drop_unread_model_keys(config: dict) -> dict:
    """`config` with only the model.* keys its model reads (a model normlab does not know is left as it is)."""
    model = config.get("model")
    if not isinstance(model, dict) or model.get("name") not in MODELS:
        return config
    kept = ("name", *MODELS[model["name"]].options)
    return {**config, "model": {k: v for k, v in model.items() if k in kept}}


def lr_for_batch_32(config: dict, experiment: str) -> dict:
    """A run of bn_small_batch or sn_switches (any profile) whose lr was saved scaled to its batch, as the same run
    given lr for batch 32: lr · 32 / batch_size with lr_batch_size 32."""
    scaled = experiment.startswith(SCALED_EXPERIMENTS) and config.get("lr_batch_size") is None
    if not scaled:
        return config
    return {**config, "lr": config["lr"] * LR_GIVEN_FOR / config["batch_size"], "lr_batch_size": LR_GIVEN_FOR}


def migrate(config: dict, experiment: str) -> dict:
    return lr_for_batch_32(drop_unread_model_keys(drop_keys(add_keys(config))), experiment)


def migrate_tree(root: Path) -> tuple[int, int]:
    """Migrate every run record below `root` (a run's experiment is its folder's parent's name, as
    runs/<experiment>/<run> and archives lay them out), and rename a run dir whose name shows an lr it no longer
    gives (`-lr0.018750000000000003-` is `-lr0.01875-` now), so that a sweep resumed from it finds its runs;
    (records changed, records already current)."""
    changed = current = 0
    for run_dir in sorted({p.parent for name in RECORDS for p in root.rglob(name)}):
        experiment, renamed = run_dir.parent.name, run_dir
        for path in (run_dir / name for name in RECORDS if (run_dir / name).is_file()):
            try:
                record = read_json(path) if path.suffix == ".json" else read_checkpoint(path)
            except DamagedCheckpoint:  # never resumed from (normlab falls back to prev.pt or starts over): left as is
                continue
            if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
                continue
            old, new = record["config"], migrate(record["config"], experiment)
            if new == old:
                current += 1
                continue
            record["config"] = new
            write_json(path, record) if path.suffix == ".json" else save_checkpoint(path, record)
            changed += 1
            name = run_dir.name.replace(
                f"-lr{old['lr']}-", f"-lr{lr_used(new['lr'], new['batch_size'], new['lr_batch_size'])}-"
            )
            renamed = run_dir.with_name(name)
        if renamed != run_dir and not renamed.exists():
            run_dir.rename(renamed)
    return changed, current


def main(argv=None) -> int:
    parser = command_parser(__doc__)
    parser.add_argument("folders", nargs="+", type=existing_dir, help="runs/, results/, an archive")
    args = parser.parse_args(argv)
    for folder in args.folders:
        changed, current = migrate_tree(folder)
        print(f"{folder}: {changed} run records migrated, {current} already current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
