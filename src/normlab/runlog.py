"""Everything a run writes about itself, under one vocabulary: TensorBoard scalars, `metrics.jsonl` (one line
per evaluation) and `summary.json`. Files are replaced atomically (temp file + rename), so a killed run
never leaves a half-written summary or checkpoint."""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import json
import math
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from normlab.config import RUN_INVARIANT, scaled_lr

# metrics.jsonl key -> TensorBoard tag. Sections are named by the part before "/" and sorted by name: "acc" and
# "loss" (train, val and test side by side) come first, then lr, the norms' internals, the BN-paper probe, speed
SCALAR_TAGS = {
    "train_loss": "loss/train",
    "train_acc": "acc/train",
    "val_loss": "loss/val",
    "val_acc": "acc/val",
    "test_loss": "loss/test",
    "test_acc": "acc/test",
    "trainset_loss": "loss/trainset",  # eval_train: training images in eval mode
    "trainset_acc": "acc/trainset",
    "lr": "lr",
    "samples_per_s": "samples_per_s",
}


def _umask() -> int:
    mask = os.umask(0)  # (reading the umask sets it: set it back at once, in this single import)
    os.umask(mask)
    return mask


UMASK = _umask()


class DiskFull(OSError):
    """No space left while writing a run's file: the file it replaces is kept, no temporary file is left."""


def atomic_write(path: Path, write, previous: Path | None = None) -> None:
    """Write `path` through `write(file)` into a temporary file of a unique name beside it, then rename it over
    `path`: readers see the old file or the new one, never half of one, and two writers never share a temporary
    file. On any failure the temporary file is removed and `path` is left as it was. With `previous`, the old
    `path` is renamed to it once the new file is complete (a checkpoint keeps the one before it)."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes it 0600: a run's files follow the umask as open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DiskFull(errno.ENOSPC, f"no space left on the device while writing {path}") from None
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def _json_safe(value: Any) -> Any:
    """NaN/inf become null so that every file stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, (json.dumps(_json_safe(obj), indent=2) + "\n").encode())


READ_LIMIT = 256 * 2**20  # bytes: no file normlab writes into a run dir (but checkpoints) comes near this


def read_regular(path: Path, limit: int = READ_LIMIT) -> bytes | None:
    """The bytes of `path` if it is a regular file of at most `limit` bytes, else None: a named pipe, a device, a
    folder or a symlink (opened with O_NOFOLLOW) is never read, so nothing a received run dir holds can hang a
    command, exhaust memory or lead a read outside the folder."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit + 1)[:limit]
    except OSError:
        return None
    finally:
        os.close(fd)


def read_json(path: Path) -> dict | None:
    """A JSON object from `path`; None where it is missing, not a regular file, too large, unreadable, damaged,
    nested too deep or not an object."""
    raw = read_regular(path)
    try:
        value = json.loads(raw.decode()) if raw is not None else None
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: bad JSON, or a 5,000-digit integer
        return None
    return value if isinstance(value, dict) else None


# the fields of a run's summary.json (trainer.py writes them) and of a metrics.jsonl row that readers compute with:
# each a number or null; a file where one is anything else is not normlab's record, and is read as damaged
SUMMARY_NUMBERS = (
    "steps",
    "epochs",
    "val_acc",
    "val_loss",
    "test_acc",
    "test_loss",
    "best_val_acc",
    "best_val_step",
    "test_acc_at_best_val",
    "train_loss",
    "train_acc",
    "wall_s",
    "samples_per_s",
    "diverged_at_step",
)
METRIC_NUMBERS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "lr",
    "samples_per_s",
    "trainset_loss",
    "trainset_acc",
)
CONFIG_TYPES: dict[str, type | tuple[type, ...]] = {
    "seed": int,
    "batch_size": int,
    "lr": (int, float),
    "norm": dict,
    "model": dict,
    "dataset": dict,
}


def numbers_or_null(record: dict, keys) -> bool:
    return all(
        record.get(k) is None or isinstance(record[k], (int, float)) and not isinstance(record[k], bool) for k in keys
    )


def read_summary(path: Path) -> dict | None:
    """A run's summary.json as normlab writes it, else None (missing, damaged, or not normlab's: a status that is
    not a string, a config that is not an object or whose seed, batch size, lr or groups have another type, a
    result that is not a number or null). Every command that reads runs reads them through this."""
    summary = read_json(path)
    if summary is None or not isinstance(summary.get("status"), str) or not numbers_or_null(summary, SUMMARY_NUMBERS):
        return None
    config = summary.get("config", {})
    if not isinstance(config, dict):
        return None
    for key, kind in CONFIG_TYPES.items():
        if key in config and (not isinstance(config[key], kind) or isinstance(config[key], bool)):
            return None
    return summary if isinstance(config.get("norm", {}).get("name", ""), str) else None


CHECKPOINT_MAGIC = b"normlab-checkpoint/2\n"  # then the payload's SHA-256 in hex, a newline, the payload
CHECKPOINT_LIMIT = 4 * 2**30  # bytes read back at most: far above any checkpoint normlab's models make


class DamagedCheckpoint(Exception):
    """A checkpoint that cannot be read, or whose bytes do not match the checksum stored with them."""


def save_checkpoint(path: Path, state: dict, previous: Path | None = None) -> None:
    """`state` (tensors and plain values only: it is read back with `weights_only=True`) serialized with
    torch.save into memory, then written after a header holding its SHA-256, atomically: a truncated or
    bit-flipped file is found out before anything in it is unpickled. The checkpoint it replaces is kept as
    `previous` where given. (Serializing in memory first means a full disk surfaces as the OS's ENOSPC from the
    write itself, not as whatever torch.save's writer makes of it.)"""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = CHECKPOINT_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    atomic_write(path, lambda f: (f.write(header), f.write(payload)), previous)


def _load_weights_only(source) -> Any:
    """torch.load restricted to tensors and plain containers (`weights_only=True`): a crafted file cannot run code.
    NumPy's RNG state (a uint32 array) is admitted for checkpoints saved before it was stored as a tensor."""
    import numpy as np

    numpy_array = [
        np._core.multiarray._reconstruct,  # type: ignore[attr-defined]  # NumPy 2 (no stubs for _core)
        np.ndarray,
        np.dtype,
        type(np.dtype(np.uint32)),
    ]
    with torch.serialization.safe_globals(numpy_array):
        return torch.load(source, map_location="cpu", weights_only=True)


def read_checkpoint(path: Path) -> dict:
    """The state a checkpoint holds: the checksum is checked first, then the payload is unpickled with
    `weights_only=True`, so that neither a damaged nor a crafted file gets further than an error.
    DamagedCheckpoint says what is wrong. (Checkpoints of the earlier formats, a torch.save record holding the
    payload and its checksum, or a plain state, are read with the same restriction.)"""
    raw = read_regular(path, CHECKPOINT_LIMIT)
    if raw is None:
        raise DamagedCheckpoint(
            f"not a regular file of at most {CHECKPOINT_LIMIT >> 30} GiB (a pipe, a device, a link)"
        )
    if raw.startswith(CHECKPOINT_MAGIC):
        checksum, _, payload = raw[len(CHECKPOINT_MAGIC) :].partition(b"\n")
        if hashlib.sha256(payload).hexdigest().encode() != checksum:
            raise DamagedCheckpoint("its bytes do not match the checksum saved with them")
    else:
        payload = _load_legacy(raw)  # type: ignore[assignment]  # bytes, or the plain state of the oldest format
    if isinstance(payload, dict):  # a plain state, saved before checksums
        state = payload
    else:
        try:
            state = _load_weights_only(io.BytesIO(payload))
        except Exception as e:  # noqa: BLE001 - checksum right, content refused or unreadable
            raise DamagedCheckpoint(f"holds more than tensors and plain values ({_first_line(e)})") from None
    if not isinstance(state, dict) or not state.get("config") or not isinstance(state.get("step"), int):
        raise DamagedCheckpoint("is not a normlab checkpoint (no config or step)")
    return state


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _load_legacy(raw: bytes) -> bytes | dict:
    """A checkpoint of the formats before normlab-checkpoint/2: the payload of a {"format", "sha256", "payload"}
    record, its checksum checked, or the plain state saved before checksums."""
    try:
        record = _load_weights_only(io.BytesIO(raw))
    except Exception as e:  # noqa: BLE001 - whatever a damaged or crafted file makes torch.load raise
        raise DamagedCheckpoint(f"unreadable: {_first_line(e)}") from None
    if not isinstance(record, dict):
        raise DamagedCheckpoint(f"holds a {type(record).__name__}, not a checkpoint")
    if record.get("format") == "normlab-checkpoint/1":
        payload = record.get("payload")
        if not isinstance(payload, bytes) or hashlib.sha256(payload).hexdigest() != record.get("sha256"):
            raise DamagedCheckpoint("its bytes do not match the checksum saved with them")
        return payload
    return record


def parse_metrics(path: Path) -> tuple[list[dict], int]:
    """The intact records of a metrics.jsonl and the number of damaged lines (cut short by a kill, garbled, or a
    step that is not an integer or a measurement not a number: METRIC_NUMBERS), which are skipped: the intact lines
    after a damaged one are kept."""
    records, damaged = [], 0
    raw = read_regular(path)
    text = raw.decode(errors="replace") if raw is not None else ""
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), int) and numbers_or_null(record, METRIC_NUMBERS):
            records.append(record)
        elif line.strip():
            damaged += 1
    return records, damaged


def read_metrics(path: Path) -> list[dict]:
    """The intact lines of a metrics.jsonl (damaged ones skipped)."""
    return parse_metrics(path)[0]


# TensorBoard's CUSTOM SCALARS tab: train and test of each metric in one chart
LAYOUT = {
    "normlab": {
        "loss": ["Multiline", ["loss/train", "loss/val", "loss/test"]],
        "accuracy": ["Multiline", ["acc/train", "acc/val", "acc/test"]],
    }
}
HPARAM_METRICS = ("acc/val", "acc/test", "loss/val", "loss/test", "loss/train", "acc/train")
# left out of the HPARAMS table: what never makes another run, and the speed and evaluation options
HPARAM_SKIP = {*RUN_INVARIANT, "eval_every", "compile", "amp", "deterministic", "channels_last"}


HPARAM_LEAD = ("norm.name", "batch_size", "lr")  # in every run's HPARAMS row, whatever its command chose


def hparams_shown(config: dict, chosen: Iterable[str] = ()) -> dict:
    """A run's HPARAMS row: norm, batch size and lr, then the keys its command chose (a sweep's swept keys and
    seed, as override keys: `norm` stands for norm.name; with lr_batch_size, the lr it trains at as `lr_used`),
    never the operational ones of HPARAM_SKIP. The keys it left at their defaults stay out of the table (they are
    in the run's .hydra/config.yaml): TensorBoard shows a key with one value across the runs as a column of
    repeats."""
    flat = flat_hparams(config)
    keys = [*HPARAM_LEAD, *(k if k in flat else f"{k}.name" for k in (c.lstrip("+~") for c in chosen))]
    row = {k: flat[k] for k in dict.fromkeys(keys) if k in flat and k not in HPARAM_SKIP}
    if config.get("lr_batch_size") is not None:  # the lr it trains at, beside lr as given
        row["lr_used"] = scaled_lr(config["lr"], config["batch_size"], config["lr_batch_size"])
    return row


def flat_hparams(config: dict, prefix: str = "") -> dict:
    """The config as TensorBoard hparams: dotted keys, scalar values (lists and None become strings)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_hparams(value, f"{prefix}{key}."))
        elif isinstance(value, (bool, int, float, str)):
            out[prefix + key] = value
        else:
            out[prefix + key] = str(value)
    return out


def missing_folders(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, deepest first."""
    return [p for p in (path, *path.parents) if not p.exists()]


def remove_empty_folders(folders: list[Path]) -> None:
    """rmdir each folder (deepest first) as long as it is empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (another run is in it), or gone already
            if folder.exists():
                break


def duration(seconds: float) -> str:
    """'42 s', '7 min', '2.5 h': a length a person reads at a glance."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def plan_line(batch_size: int, total_steps: int, steps_per_epoch: int, cadence, data, step: int) -> str:
    """What a run is about to do, printed before its first step: its length in steps and epochs, and how often it
    evaluates on how many images (the time left is on the progress bar, or on each evaluation's line)."""
    n_evals = -(-total_steps // cadence.eval_every)
    resumed = f", resuming at step {step:,}" if step else ""
    if cadence.test_each_eval:
        images = f"{data.val_images + data.test_images:,} images"
    else:
        images = f"{data.val_images:,} validation images (the {data.test_images:,} test images at the end)"
    return (
        f"normlab: {total_steps:,} steps ({total_steps / steps_per_epoch:.3g} epochs) at batch "
        f"{batch_size}{resumed}; {n_evals} evaluation{'s' * (n_evals > 1)} of {images}, "
        f"every {cadence.eval_every:,} steps"
    )


def eval_line(record: dict) -> str:
    """One plain line per evaluation (train.log, and stdout where it is not a terminal)."""
    parts = [f"step {record['step']}", f"epoch {record['epoch']:.2f}", f"train_loss {record['train_loss']:.4f}"]
    parts += [f"{k} {record[k]:.4f}" for k in ("train_acc", "val_acc", "test_acc") if record.get(k) is not None]
    return " · ".join(parts)


def keep_events_up_to(run_dir: Path, step: int) -> None:
    """Rewrite the run's TensorBoard event files so that they hold the events of steps <= `step` only (none on a
    fresh start): what a killed process wrote after its checkpoint is gone from the files themselves, not just
    hidden by a purge marker, so any reader sees each point once, as from an uninterrupted run. (The trainer
    flushes the events before every checkpoint, so every point up to it is on disk.)"""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        if step == 0:
            path.unlink()
            continue
        try:
            records = list(RawEventFileLoader(str(path)).Load())
        except Exception:  # noqa: BLE001 - a file too damaged to read holds nothing to keep
            records = []
        kept = [r for r in records if Event.FromString(r).step <= step]
        if len(kept) == len(records):
            continue
        buffer = io.BytesIO()
        writer = RecordWriter(buffer)
        for record in kept:
            writer.write(record)
        atomic_write_bytes(path, buffer.getvalue())


@functools.cache
def quiet_event_writer() -> None:
    """(Once per process.) TensorBoard's event-writer thread keeps its error (a full disk) for the loop, which
    raises it at the next event or flush and says it in one line, and then re-raises it in the thread, whose
    traceback threading.excepthook would print: left out for that thread."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    default = threading.excepthook

    def excepthook(args):
        if not isinstance(args.thread, _AsyncWriterThread):
            default(args)

    threading.excepthook = excepthook


class RunLog:
    """TensorBoard + metrics.jsonl for one run. On resume from `start_step`, later records are dropped from both."""

    def __init__(self, run_dir: Path, start_step: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        self.metrics_path = run_dir / "metrics.jsonl"
        records, damaged = parse_metrics(self.metrics_path)
        if damaged:
            print(
                f"warning: {self.metrics_path}: {damaged} damaged line(s) dropped, the intact ones kept",
                file=sys.stderr,
            )
        kept = [r for r in records if r["step"] <= start_step]
        atomic_write_bytes(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        atomic_write_bytes(run_dir / "train.log", "".join(eval_line(r) + "\n" for r in kept).encode())
        self.records = kept
        keep_events_up_to(run_dir, start_step)
        quiet_event_writer()
        self.writer = SummaryWriter(log_dir=str(run_dir))

    def log_config(self, config: dict, chosen: Iterable[str] = ()) -> None:
        """Once per run: its HPARAMS row (`hparams_shown`: so that a sweep is a sortable table) and the scalar
        layout. The row's session is ended by `log_end`, so that a run stopped midway is not shown as finished."""
        from torch.utils.tensorboard.summary import hparams

        _, start, _ = hparams(hparams_shown(config, chosen), {tag: 0.0 for tag in HPARAM_METRICS})
        # the session only, no per-run experiment summary: TensorBoard then builds the experiment from every run,
        # marks the keys whose values differ (what the sweep varied) and lists them first
        self.writer._get_file_writer().add_summary(start)
        self.writer.add_custom_scalars(LAYOUT)

    def log_end(self, status: str) -> None:
        """The run's HPARAMS session ends: Success for a completed run, Failure for a diverged one (the tab's
        Status filter); a run that was stopped has none and shows as Unknown until it is resumed to its end."""
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        code = api_pb2.Status.Value("STATUS_SUCCESS" if status == "completed" else "STATUS_FAILURE")
        info = plugin_data_pb2.HParamsPluginData(
            session_end_info=plugin_data_pb2.SessionEndInfo(status=code), version=metadata.PLUGIN_DATA_VERSION
        )
        plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=info.SerializeToString())
        value = Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=SummaryMetadata(plugin_data=plugin))
        self.writer._get_file_writer().add_summary(Summary(value=[value]))

    def log_train(self, step: int, loss: float, acc: float) -> None:
        """A training-curve point (the mean over the steps since the previous one): loss/train, acc/train."""
        self.writer.add_scalar(SCALAR_TAGS["train_loss"], loss, step)
        self.writer.add_scalar(SCALAR_TAGS["train_acc"], acc, step)

    def log_eval(self, record: dict) -> None:
        """An evaluation: its scalars in TensorBoard (train/* come from log_train's denser cadence) and a line in
        metrics.jsonl and train.log (with the training loss and accuracy since the previous evaluation)."""
        step = record["step"]
        for key, tag in SCALAR_TAGS.items():
            if record.get(key) is not None and not key.startswith("train_"):
                self.writer.add_scalar(tag, record[key], step)
        for name, value in record.get("landscape", {}).items():
            self.writer.add_scalar(f"landscape/{name}", value, step)
        for name, values in record.get("last_hidden_input", {}).items():
            for unit, value in enumerate(values):
                self.writer.add_scalar(f"probe/last_hidden_input/unit{unit}/{name}", value, step)
        record = _json_safe(record)
        self.records.append(record)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        with open(self.metrics_path.parent / "train.log", "a") as f:  # the same, for people: plain text
            f.write(eval_line(record) + "\n")

    def log_internals(self, step: int, internals: dict[str, dict[str, float]], histograms: dict) -> None:
        """Per-layer norm parameters: scalars `norm/<layer>/<name>`, and histograms `norm/<layer>/<name>` of the
        tensors layers declare (norms.norm_histograms: BIN's gates)."""
        for layer, values in internals.items():
            for name, value in values.items():
                self.writer.add_scalar(f"norm/{layer}/{name}", value, step)
        for name, tensor in histograms.items():
            self.writer.add_histogram(f"norm/{name}", tensor.cpu(), step)

    def flush(self) -> None:
        """Every event so far on disk (before a checkpoint: a resume from it finds its points there)."""
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
