"""Compiled CPU kernels for Batch-Instance Norm and Switchable Norm (native.c), for small batches.

At batch 2 the Python Functions of BIN and SN spend most of their time dispatching ~50 small ops (3.3-3.6x
nn.BatchNorm2d); the same arithmetic in C is one call per forward and one per backward (about 1.1x). The
library is compiled with the system's C compiler on first use into $NORMLAB_CACHE (default ~/.cache/normlab),
named by a hash of its sources, and loaded with ctypes: no torch headers, about a second to build. Without a
compiler, or with NORMLAB_NATIVE=0, the layers use their Python Functions (same formulas, same tests).
"""

import ctypes
import functools
import hashlib
import os
import shlex
import subprocess
import sysconfig
import tempfile
import warnings
from pathlib import Path

import torch

SOURCES = (Path(__file__).with_name("native.c"), Path(__file__).with_name("native_kernels.h"))
FLAGS = ("-O3", "-fPIC", "-shared", "-fopenmp")  # no -march=native: a cache may be shared by different CPUs
SUFFIX = {torch.float32: "_f", torch.float64: "_d"}
# each kernel's C parameters: P a pointer (tensor data or NULL), L int64_t, d double, i int; all end in the thread count
SIGNATURES = {
    "bin_forward": "PPPPPPPLLLdidPPP",
    "bin_backward": "PPPPPPLLLdiPPPP",
    "sn_forward": "PPPPPPPLLLdidiPPP",
    "sn_backward": "PPPPPPPLLLiiPPPPP",
}
CTYPES = {"P": ctypes.c_void_p, "L": ctypes.c_int64, "d": ctypes.c_double, "i": ctypes.c_int}


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "normlab"
    return Path(os.environ.get("NORMLAB_CACHE") or default)


def compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


def build(target: Path) -> None:
    """Compile native.c into `target`, atomically (a temporary file renamed), so that concurrent processes
    (a torchrun job, a parallel sweep) never load a half-written library."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([*compiler(), *FLAGS, "-o", tmp, str(SOURCES[0])], check=True, capture_output=True, text=True)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on first use; None (with one warning) where they cannot be built."""
    if os.environ.get("NORMLAB_NATIVE", "1") == "0":
        return None
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES) + " ".join(FLAGS).encode()).hexdigest()
    target = cache_dir() / f"native-{digest[:16]}.so"
    try:
        if not target.exists():
            build(target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", None) or e
        warnings.warn(f"normlab: compiled BIN/SN kernels unavailable, using the Python path: {detail}", stacklevel=2)
        return None
    for name, signature in SIGNATURES.items():
        for suffix in SUFFIX.values():
            kernel = getattr(lib, name + suffix)
            kernel.argtypes, kernel.restype = [CTYPES[code] for code in signature + "i"], None
    return lib


def usable(x: torch.Tensor, *tensors: torch.Tensor) -> bool:
    """Whether the compiled kernels take this call: CPU, float32 or float64 throughout, contiguous, not under
    torch.compile (which traces the Python Functions instead), and the library builds."""
    return (
        x.device.type == "cpu"
        and x.dtype in SUFFIX
        and all(t.dtype == x.dtype and t.is_contiguous() for t in (x, *tensors))
        and not torch.compiler.is_compiling()
        and library() is not None
    )


def call(name: str, dtype: torch.dtype, *args) -> None:
    """Run kernel `name` for `dtype` on torch's thread count; tensors are passed as pointers to their data."""
    pointers = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
    getattr(library(), name + SUFFIX[dtype])(*pointers, torch.get_num_threads())


class BatchInstanceNormNative(torch.autograd.Function):
    """BatchInstanceNormFunction's forward and backward as two compiled calls (x (N, C, M) contiguous, CPU,
    one process); the same output, and with `batch_stats` it updates the running statistics and
    `num_batches_tracked` itself (with `momentum`), as F.batch_norm does."""

    @staticmethod
    def forward(ctx, x, gate, weight, bias, running_mean, running_var, num_batches_tracked, eps, batch_stats, momentum):
        n, c, m = x.shape
        y, stats, scale = torch.empty_like(x), x.new_empty(2, 2, n, c), x.new_empty(n, c)
        call("bin_forward", x.dtype, x, gate, weight, bias, running_mean, running_var, num_batches_tracked, n, c, m,
             eps, batch_stats, momentum, y, stats, scale)  # fmt: skip
        ctx.save_for_backward(x, gate, weight, stats, scale)
        ctx.eps, ctx.batch_stats = eps, batch_stats
        ctx.set_materialize_grads(False)
        return y

    @staticmethod
    def backward(ctx, grad):
        if grad is None:
            return (None,) * 10
        x, gate, weight, stats, scale = ctx.saved_tensors
        n, c, m = x.shape
        dx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        d_gate, d_weight, d_bias = x.new_empty(3, c)
        call("bin_backward", x.dtype, grad.contiguous(), x, gate, weight, stats, scale, n, c, m, ctx.eps,
             ctx.batch_stats, dx, d_gate, d_weight, d_bias)  # fmt: skip
        return dx, d_gate, d_weight, d_bias, *[None] * 6


class SwitchableNormNative(torch.autograd.Function):
    """SwitchableNormFunction's forward and backward as two compiled calls (x (N, C, M) contiguous, CPU, one
    process); the same output, and with `batch_stats` it updates the running statistics itself (`momentum`)."""

    @staticmethod
    def forward(
        ctx, x, mean_logits, var_logits, weight, bias, running_mean, running_var, eps, batch_stats, momentum, statistics
    ):
        n, c, m = x.shape
        has_in = statistics[0] == "in"
        y, stats, mixed = torch.empty_like(x), x.new_empty(2, len(statistics), n, c), x.new_empty(2, n, c)
        call("sn_forward", x.dtype, x, mean_logits, var_logits, weight, bias, running_mean, running_var, n, c, m,
             eps, batch_stats, momentum, has_in, y, stats, mixed)  # fmt: skip
        ctx.save_for_backward(x, mean_logits, var_logits, weight, stats, mixed)
        ctx.batch_stats, ctx.has_in = batch_stats, has_in
        ctx.set_materialize_grads(False)
        return y

    @staticmethod
    def backward(ctx, grad):
        if grad is None:
            return (None,) * 11
        x, mean_logits, var_logits, weight, stats, mixed = ctx.saved_tensors
        n, c, m = x.shape
        dx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        d_mean_logits, d_var_logits = torch.empty_like(mean_logits), torch.empty_like(var_logits)
        d_weight, d_bias = x.new_empty(2, c)
        call("sn_backward", x.dtype, grad.contiguous(), x, mean_logits, var_logits, weight, stats, mixed, n, c, m,
             ctx.batch_stats, ctx.has_in, dx, d_mean_logits, d_var_logits, d_weight, d_bias)  # fmt: skip
        return dx, d_mean_logits, d_var_logits, d_weight, d_bias, *[None] * 6
