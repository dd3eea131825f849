"""The command line: Hydra composes the config, this module turns it into a typed `Config`, runs the trainer,
and turns bad input into one line on stderr and exit code 2 (no traceback, no half-made run dir).

`precheck` validates every job of a command (each combination of a sweep) before Hydra creates anything,
so a typo fails in a second instead of after the first jobs of a sweep.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from normlab.checks import check_norm_overrides, load_config
from normlab.config import Config, ConfigError, identity, scaled_lr

# Hydra's configs: shipped inside the installed package (normlab/conf, from a wheel), else the checkout's conf/
# (an editable install, or run.py in the checkout)
CONF = next(
    (p for p in (Path(__file__).with_name("conf"), Path(__file__).resolve().parents[2] / "conf") if p.is_dir()),
    Path(__file__).with_name("conf"),
)

# what a stopped `normlab train` says (launch.py says it for torchrun's processes too)
INTERRUPTED = "interrupted: finished runs and the last checkpoint are kept; re-run the same command to resume"


def register_resolvers() -> None:
    """`${normlab.suffix:x}`: "" for an empty x, else ",x" (appends extra overrides to run-dir names);
    `${normlab.world:}`: the world-size suffix of a torchrun run (world_suffix);
    `${normlab.lr:lr,batch_size,lr_batch_size}`: the learning rate a run uses (config.Config.scaled_lr), for its name;
    `${normlab.eq:a,b}`: whether a == b (a setting that follows the swept arm, e.g. the norm's name)."""
    if not OmegaConf.has_resolver("normlab.suffix"):
        OmegaConf.register_new_resolver("normlab.suffix", lambda s: f",{s}" if s else "")
    if not OmegaConf.has_resolver("normlab.world"):  # ",world_size=N" under torchrun with N > 1 processes, else ""
        OmegaConf.register_new_resolver("normlab.world", world_suffix)
    if not OmegaConf.has_resolver("normlab.lr"):  # run names show the lr used: lr0.00625 for lr=0.1 lr_batch_size=32
        OmegaConf.register_new_resolver("normlab.lr", lr_used)
    if not OmegaConf.has_resolver("normlab.eq"):  # ${normlab.eq:${norm.name},batch}: true for norm=batch only
        OmegaConf.register_new_resolver("normlab.eq", lambda a, b: str(a) == str(b))


def lr_used(lr, batch_size, lr_batch_size):
    """`lr` as given (so that names without lr_batch_size stay as they were), else lr · batch_size / lr_batch_size
    to 6 significant digits (0.1 · 6 / 32 is named 0.01875, not 0.018750000000000003)."""
    if lr_batch_size is None:
        return lr
    return float(f"{scaled_lr(float(lr), float(batch_size), float(lr_batch_size)):.6g}")


def world_suffix() -> str:
    """The run-dir suffix of a data-parallel run: its number of processes is part of what the run is."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return f",world_size={world}" if world > 1 else ""


def is_main_process() -> bool:
    """False on the other ranks under torchrun, which stay quiet (rank 0 speaks for the run)."""
    return os.environ.get("RANK", "0") == "0"


FAIL_GRACE_S = 2.0


def fail(message: str) -> None:
    """One `error:` line (from rank 0 alone under torchrun) and exit 2."""
    if is_main_process():
        print(f"error: {message}", file=sys.stderr, flush=True)
    else:  # torchrun stops every rank once one exits: give rank 0 the time to print its line first
        time.sleep(FAIL_GRACE_S)
    sys.exit(2)


# what the `sweeps` extra installs, by the choices that need it: (config group, option) -> Hydra plugin module
SWEEPS_EXTRA = {
    ("hydra/launcher", "parallel"): "hydra_plugins.hydra_joblib_launcher",
    ("hydra/launcher", "joblib"): "hydra_plugins.hydra_joblib_launcher",
    ("hydra/sweeper", "optuna"): "hydra_plugins.hydra_optuna_sweeper",
    ("hparams_search", "optuna"): "hydra_plugins.hydra_optuna_sweeper",
}


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def check_extras(overrides) -> None:
    """A launcher or sweeper of the `sweeps` extra, chosen where it is not installed: one line naming the extra
    (Hydra's own error is a config search path)."""
    for o in overrides:
        for value in _values(o) or []:
            module = SWEEPS_EXTRA.get((o.key_or_group, value))
            if module and not installed(module):
                fail(
                    f"{o.key_or_group}={value} needs {module.split('.')[1]}, which is not installed: it comes with "
                    "normlab's `sweeps` extra (pip install 'normlab[sweeps]'; `make install` includes it)"
                )


def registered() -> dict[str, list[str]]:
    """The names the registries hold, per config group."""
    from normlab.datasets import CUSTOM, DATASETS
    from normlab.models import MODELS
    from normlab.norms import NORMS

    return {"dataset": [*DATASETS, CUSTOM], "model": list(MODELS), "norm": list(NORMS)}


def register_groups(conf_dir: Path) -> None:
    """A dataset, model or norm registered in code without a conf/<group>/<name>.yaml gets a config {name: <name>}
    in Hydra's ConfigStore (a model's with its config's keys and defaults), so that `norm=<name>` or `model=<name>
    model.<key>=...` works with nothing but the registration."""
    from hydra.core.config_store import ConfigStore

    from normlab.models import MODELS

    store = ConfigStore.instance()
    for group, names in registered().items():
        for name in names:
            if not (conf_dir / group / f"{name}.yaml").exists():
                node = dataclasses.asdict(MODELS[name].config()) if group == "model" else {"name": name}
                store.store(group=group, name=name, node=node)


def config_groups(conf_dir: Path) -> dict[str, list[str]]:
    groups = {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(conf_dir.iterdir())
        if d.is_dir() and d.name != "hydra"
    }
    for group, names in registered().items():
        groups[group] = sorted({*groups.get(group, []), *names})
    return groups


CHECKED: dict[str, Config] = {}  # a plain config (as JSON) -> its checked Config, in this process


def typed_config(cfg: DictConfig, experiment: str) -> Config:
    """The composed config as a checked Config (`checks.load_config`), checked once per process: a job that
    `precheck` validated (a single run, or a sweep on Hydra's in-process launcher) is not built and checked again
    when it runs."""
    values = plain_config(cfg, experiment)
    key = json.dumps(values, sort_keys=True, default=str)
    if key not in CHECKED:
        CHECKED[key] = load_config(values)
    return CHECKED[key]


def plain_config(cfg: DictConfig, experiment: str) -> dict:
    """The composed config resolved to plain values, without Hydra's own keys."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        values = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(values, dict)  # a DictConfig becomes a dict
    except OmegaConfBaseException as e:  # an interpolation typo (${oc.env:UNSET}, ${no.such.key}): user input
        raise ConfigError(f"cannot resolve the config: {one_line(e)}") from None
    values.pop("hydra", None)
    values["experiment"] = experiment
    return values


def one_line(error: Exception) -> str:
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    return "; ".join(lines[:2]) or type(error).__name__


def _values(override) -> list[str] | None:
    """The values an override takes: each value of a sweep, or its one value; None for an interval (a search
    space, e.g. for Optuna), which cannot be enumerated and is left to the sweeper."""
    from hydra.core.override_parser.types import IntervalSweep

    if override.is_sweep_override():
        if isinstance(override.value(), IntervalSweep):
            return None
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


def check_writable(overrides) -> None:
    """The output root (`runs/`, or the fixed prefix of a hydra.run.dir / hydra.sweep.dir override) must be
    creatable: its nearest existing ancestor must be a writable directory."""
    roots = [o.get_value_element_as_str() for o in overrides if o.key_or_group in ("hydra.run.dir", "hydra.sweep.dir")]
    for root in roots or ["runs"]:
        path = Path(root.split("$", 1)[0] or ".").absolute()
        ancestor = next(p for p in (path, *path.parents) if p.exists())
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            fail(f"cannot write run directories under {path}: {ancestor} is not a writable directory")


# Hydra's flags that print something instead of running jobs; every other command is validated whole
INFO_FLAGS = ("--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc")
VALUE_FLAGS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd", "--package", "-p")


def split_flags(argv: list[str], conf_dir: Path) -> tuple[list[str], str, Path, bool] | None:
    """(overrides, config name, config dir, sweeping) of a command line; None for one that only prints (--help,
    --cfg, ...). `--config-name` and `--config-path` are honoured, so that no flag switches the check off."""
    args, name, sweeping, i = [], "config", False, 0
    if any(a.split("=", 1)[0] in INFO_FLAGS for a in argv):
        return None
    while i < len(argv):
        flag, _, value = argv[i].partition("=")
        if flag in VALUE_FLAGS:
            if not value and i + 1 < len(argv):
                i, value = i + 1, argv[i + 1]
            if flag in ("--config-name", "-cn"):
                name = value
            elif flag in ("--config-path", "-cp"):
                conf_dir = Path(value) if Path(value).is_absolute() else conf_dir.parent / value
        elif argv[i] in ("-m", "--multirun"):
            sweeping = True
        elif not argv[i].startswith("-"):
            args.append(argv[i])
        i += 1
    return args, name, conf_dir, sweeping


def job_config(job: tuple[str, ...], groups: dict, name: str, cache: dict) -> DictConfig:
    """The composed config of one job. Hydra composes once per combination of config-group choices (and + / ~
    overrides); plain `key=value` overrides are set on a copy of it, as Hydra would set them last: a sweep of
    thousands of seeds or learning rates composes once, not thousands of times."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    def structural(item: str) -> bool:
        return item[0] in "+~" or item.split("=", 1)[0] in groups

    base = tuple(j for j in job if structural(j))
    if base not in cache:
        cache[base] = compose(config_name=name, overrides=list(base))
    cfg = cache[base].copy()
    parser = OverridesParser.create()
    for item in job:
        if not structural(item):
            (o,) = parser.parse_overrides([item])
            if OmegaConf.select(cfg, o.key_or_group, default=KeyError) is KeyError:  # not a key: Hydra says so
                return compose(config_name=name, overrides=list(job))
            OmegaConf.update(cfg, o.key_or_group, o.value(), merge=False)
    return cfg


def precheck(argv: list[str], conf_dir: Path) -> list[tuple[tuple[str, ...], Config]]:
    """Compose and validate every job the command line asks for, however it is launched; exit 2 with one line at
    the first bad one, or where two jobs would be the same run (one run dir written by two processes). Returns
    each job's overrides and typed config (what the reports match runs against)."""
    split = split_flags(argv, conf_dir)
    if split is None:
        return []  # --help, --cfg, ...: Hydra prints, runs nothing
    args, config_name, conf_dir, sweeping = split
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    register_resolvers()
    register_groups(conf_dir)
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception as e:  # noqa: BLE001 - Hydra's parse errors are user input errors
        fail(f"cannot parse the command line: {one_line(e)}")
    check_writable(overrides)
    check_extras(overrides)
    for o in overrides:
        if o.is_sweep_override() and not sweeping and not o.key_or_group.startswith("hydra"):
            fail(
                f"{o.input_line} is a sweep (several values) without -m; run `normlab train -m ...` to run each "
                "value, or give one value"
            )
    given: dict[str, tuple[str | None, str | None]] = {}
    for o in overrides:
        key = o.key_or_group
        if key.startswith("hydra"):
            continue
        if o.is_delete():
            fail(f"{o.input_line} is not allowed: every key of normlab's config is needed (give {key} a value instead)")
        value = o.input_line if o.is_sweep_override() else repr(o.value())  # progress=false is progress=False
        if key in given and given[key][1] != value:  # Hydra would take the last one, silently
            fail(f"{key} is given twice ({given[key][0]} and {o.input_line}); give it once")
        given[key] = (o.input_line, value)
    groups = config_groups(conf_dir)
    choices = []
    for o in overrides:
        key = o.key_or_group
        values = _values(o)
        if key.startswith("hydra") or values is None:
            continue
        if key in groups and o.is_delete() is False:
            for v in values:
                if v not in groups[key] and v != "null":
                    fail(f"{key}={v} is not allowed; choose from {', '.join(groups[key])}")
        prefix = "+" if o.is_add() else "++" if o.is_force_add() else "~" if o.is_delete() else ""
        choices.append([f"{prefix}{key}={v}" for v in values] if values else [f"{prefix}{key}"])
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
        if sweeping:  # sweeps an experiment config declares (hydra.sweeper.params)
            first = [c[0] for c in choices]
            try:
                composed = compose(config_name=config_name, overrides=first, return_hydra_config=True)
            except Exception as e:  # noqa: BLE001 - composition errors are user input errors
                fail(one_line(e))
            keys_given = {o.key_or_group for o in overrides}
            for key, value in (composed.hydra.sweeper.params or {}).items():
                if key not in keys_given:
                    (o,) = OverridesParser.create().parse_overrides([f"{key}={value}"])
                    if (declared := _values(o)) is not None:
                        choices.append([f"{key}={v}" for v in declared])
        jobs = list(itertools.product(*choices))
        checked: list[tuple[tuple[str, ...], Config]] = []
        runs: dict[str, tuple[str, ...]] = {}
        cache: dict = {}
        for job in jobs:
            experiment = next((j.split("=", 1)[1] for j in job if j.startswith("experiment=")), "default")
            where = f" (in the job {' '.join(job)})" if len(jobs) > 1 else ""
            try:
                cfg = job_config(job, groups, config_name, cache)
            except Exception as e:  # noqa: BLE001 - composition errors are user input errors
                message = one_line(e)
                if "Could not override" in message:
                    key = message.split("'")[1]
                    message = f"unknown config key {key!r}; `normlab train --cfg job` lists the keys this config has"
                    norm = next((j.split("=", 1)[1] for j in job if j.startswith("norm=")), None)
                    if key.startswith("norm.") and norm is not None:
                        try:
                            check_norm_overrides([o for o in job if o.startswith(key + "=")], [norm])
                        except ConfigError as refused:
                            message = str(refused)
                fail(message + where)
            try:
                typed = typed_config(cfg, experiment)
            except ConfigError as e:
                fail(f"{e}{where}")
            run = identity(typed.to_dict())
            if run in runs:
                first, second = ([j for j in a if j not in b] for a, b in ((runs[run], job), (job, runs[run])))
                what = f"{' '.join(first)} and {' '.join(second)}" if first else f"{' '.join(job)} twice"
                fail(
                    f"the sweep runs {what}: the same run (they differ only in keys that do not change a run, or in "
                    "how a value is written), which would write one run dir; give each value once"
                )
            runs[run] = job
            checked.append((job, typed))
        try:
            check_norm_overrides({o for job, _ in checked for o in job}, [cfg.norm.name for _, cfg in checked])
        except ConfigError as e:
            fail(str(e))
    GlobalHydra.instance().clear()
    return checked


def check_data_files(jobs: list[tuple[tuple[str, ...], Config]]) -> None:
    """Every dataset the jobs read is on disk (fetched now where it may be), before Hydra creates any run dir."""
    from normlab.data import ensure_files
    from normlab.datasets import dataset_spec

    seen = set()
    for _, cfg in jobs:
        where = (cfg.dataset.name, cfg.dataset.target, cfg.data.root, cfg.data.download)
        if cfg.dataset.name != "custom" and where not in seen:
            seen.add(where)
            try:
                ensure_files(dataset_spec(cfg.dataset.name, cfg.dataset.target), cfg.data)
            except ConfigError as e:
                fail(str(e))


def hydra_record(cfg: DictConfig, hc):
    """on_start for the trainer: write the composed config and the overrides to .hydra/ (config.yaml,
    overrides.yaml, as Hydra would), but only for a run the trainer accepted, so that a refused command never
    rewrites the record of a finished run (Hydra's own output_subdir is off: conf/hydra/normlab.yaml)."""

    def write(run_dir: Path) -> None:
        record = run_dir / ".hydra"
        record.mkdir(exist_ok=True)
        OmegaConf.save(cfg, record / "config.yaml", resolve=False)
        OmegaConf.save(OmegaConf.create(list(hc.overrides.task)), record / "overrides.yaml")

    return write


FAILED_JOBS: list[str] = []  # the run dirs of this process's jobs that crashed (a sweep goes on, then exits 1)
RERUN_FLAG = "--experimental-rerun"  # Hydra's: unpickles the file it names, i.e. runs whatever code it holds


def refuse_unsafe_flags(argv: list[str]) -> None:
    """Exit 2 on what would run code or write where no run belongs: Hydra's --experimental-rerun in any spelling
    (argparse takes any unambiguous prefix, `--exp=x` too), and an output folder that is the file system's root,
    a folder right under it, or the home folder (`hydra.run.dir=/`)."""
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if len(flag) >= 3 and RERUN_FLAG.startswith(flag):
            fail(
                f"{flag} is not allowed: it loads a pickle, which can run any code; re-run a run with its own "
                "command (its folder's .hydra/overrides.yaml)"
            )
        key, _, value = arg.lstrip("+").partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir") and value:
            path = Path(value).expanduser().resolve()
            if len(path.parts) <= 2 or path == Path.home().resolve():
                fail(
                    f"{key}={value} is not allowed: normlab writes a run's files into that folder; name a folder "
                    "of its own (e.g. runs/mine)"
                )


def run_job(cfg: DictConfig) -> float:
    """Hydra's task function: one run. Bad input exits 2; a crash in a sweep is recorded and the sweep goes on.
    Returns the run's best validation accuracy (0 for a diverged or failed run, or without a validation split):
    the objective Optuna maximizes. Tuning never reads the test set."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from normlab.rundir import SUMMARY
    from normlab.runlog import DiskFull, write_json
    from normlab.trainer import train

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    config = None
    try:
        config = typed_config(cfg, hc.runtime.choices.get("experiment") or "default")
        chosen = [o.split("=", 1)[0] for o in hc.overrides.task]  # the HPARAMS columns after norm, batch, lr
        summary = train(config, run_dir, on_start=hydra_record(cfg, hc), chosen=chosen)
    except ConfigError as e:
        fail(str(e))
    except DiskFull as e:
        fail(f"{e.strerror}; the last good checkpoint is kept, nothing half-written: free space and re-run to resume")
    except KeyboardInterrupt:
        raise
    except Exception as e:
        if hc.mode != RunMode.MULTIRUN:
            raise
        failed = {"status": "failed", "error": f"{type(e).__name__}: {e}", "run_dir": str(run_dir)}
        write_json(run_dir / SUMMARY, {**failed, "config": config.to_dict()} if config else failed)
        print(f"normlab: failed · {type(e).__name__}: {e} · {run_dir}", file=sys.stderr)
        FAILED_JOBS.append(str(run_dir))
        return 0.0
    if is_main_process():
        print(summary_line(summary))
    return summary.get("best_val_acc") or 0.0


def summary_line(s: dict) -> str:
    if s.get("skipped"):
        return f"normlab: skipped (already {s['status']}; overwrite=true reruns it) · logs: {shown_path(s['run_dir'])}"
    val, test = (("n/a" if s.get(k) is None else f"{s[k]:.4f}") for k in ("val_acc", "test_acc"))
    extra = f" at step {s['diverged_at_step']}" if s["status"] == "diverged" else ""
    extra += f" ({s['hint']})" if s.get("hint") else ""
    return (
        f"normlab: {s['status']}{extra} · val_acc {val} · test_acc {test} · {s['steps']} steps · {s['wall_s']:.1f} s"
        f" · logs: {shown_path(s['run_dir'])}"
    )


def shown_path(path: str) -> str:
    """`path` relative to the working directory where it lies below it (what a user types next), else as it is."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def sweep_folder(argv: list[str]) -> str:
    """A sweep of the default experiment lands in a folder of its own, named by what it sweeps, e.g.
    runs/default/norm=batch,group-batch_size=2,8,32/, so that TensorBoard, compare and plot read one sweep and a
    long run's curve does not squash a short one's; the same command finds it again (and resumes or skips its
    runs). A claim's experiment keeps runs/<experiment>/; `hydra.sweep.dir=...` chooses any folder. Returns
    "/<name>", or "" where the sweep keeps Hydra's layout."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    split = split_flags(argv, CONF)
    if split is None or not split[3]:
        return ""
    try:
        overrides = OverridesParser.create().parse_overrides(split[0])
    except Exception:  # noqa: BLE001 - precheck says what is wrong with the command line
        return ""
    keys = {o.key_or_group for o in overrides}
    if keys & {"experiment", "hydra.sweep.dir", "hydra.sweep.subdir"}:
        return ""
    named = [str(o.input_line) for o in overrides if o.is_sweep_override() or o.key_or_group == "hparams_search"]
    return "/" + ("-".join(named).replace("/", "_") or "sweep")


def train_command(argv: list[str]) -> None:
    """`normlab train ARGS`, the same as `python run.py ARGS`: every job checked before the first starts, then
    Hydra runs them. Ctrl-C or SIGTERM (a scheduler, `kill`) at any moment, the checks included, ends with one line
    and exit 130, every finished run and the last checkpoint kept."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        import hydra

        FAILED_JOBS.clear()  # (a test may call this twice in one process)
        refuse_unsafe_flags(argv)
        register_resolvers()
        register_groups(CONF)
        os.environ["NORMLAB_SWEEP"] = sweep_folder(argv)  # read by hydra.sweep.subdir (conf/hydra/normlab.yaml)
        check_data_files(precheck(argv, CONF))  # (the reports compose jobs too, but read runs, not data)
        task = hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")(run_job)
        sys.argv = [sys.argv[0], *argv]  # Hydra reads the command line from sys.argv
        task()
    except KeyboardInterrupt:
        newline = "\n" if sys.stderr.isatty() else ""  # below the progress bar's line, not on it
        if is_main_process():  # (torchrun stops the other ranks when one fails: rank 0 speaks for the run)
            print(newline + INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    if FAILED_JOBS:
        print(
            f"error: {len(FAILED_JOBS)} job(s) of the sweep failed (each folder's summary.json says why): "
            + ", ".join(FAILED_JOBS),
            file=sys.stderr,
        )
        sys.exit(1)
