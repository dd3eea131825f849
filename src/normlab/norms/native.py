"""Compiled CPU kernels: Batch-Instance Norm, Switchable Norm and the normalized LSTM's step (native.c).

At small batches the Python Functions of BIN and SN spend most of their time dispatching ~50 small ops per layer
(3.3-3.6x nn.BatchNorm2d at batch 2); in C each is one call per forward and one per backward. The LN/BN-LSTM
cell's ~12 autograd ops per step become one node. The library is compiled with the system's C compiler on first
use (~2 s) into $NORMLAB_CACHE (default ~/.cache/normlab), named by a hash of its sources and of the CPU's
features, and loaded with ctypes: no torch headers, no build step at install. Without a compiler, or with
NORMLAB_NATIVE=0, the layers use their Python code (same formulas; the tests run both).
"""

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import subprocess
import sysconfig
import tempfile
import warnings
from pathlib import Path

import torch

SOURCES = tuple(Path(__file__).with_name(name) for name in ("native.c", "native_kernels.h", "native_lstm.h"))
FLAGS = ("-O3", "-fPIC", "-shared")
# tried in order: this CPU's vector instructions (about 2x on the LSTM step) and OpenMP threads, then without
OPTIONAL_FLAGS = (("-march=native", "-fopenmp"), ("-fopenmp",), ())
SUFFIX = {torch.float32: "_f", torch.float64: "_d"}
# each kernel's C parameters: P a pointer (tensor data or NULL), L int64_t, d double, i int; all end in the thread count
SIGNATURES = {
    "bin_forward": "PPPPPPPLLLididPPP",
    "bin_backward": "PPPPPPLLLidiPPPP",
    "sn_forward": "PPPPPPPLLLididiPPP",
    "sn_backward": "PPPPPPPLLLiiiPPPPP",
    "lstm_gates_forward": "PLPPPPPLLiiddPPP",
    "lstm_cell_forward": "PPPPPPLLiiddPPPP",
    "lstm_step_backward": "PPPPPPPPPPPLLiiPPPPPPP",
}
CTYPES = {"P": ctypes.c_void_p, "L": ctypes.c_int64, "d": ctypes.c_double, "i": ctypes.c_int}


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "normlab"
    return Path(os.environ.get("NORMLAB_CACHE") or default)


def compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")


def cpu_signature() -> bytes:
    """What -march=native compiles for: the CPU's feature flags where Linux lists them, else the architecture.
    Part of the library's name, so that a cache shared by different machines never loads another CPU's build."""
    try:
        flags = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")]
    except OSError:
        flags = []
    return (flags[0] if flags else platform.machine()).encode()


def build(target: Path) -> None:
    """Compile native.c into `target` with the first of OPTIONAL_FLAGS the compiler takes, atomically (a
    temporary file renamed), so that concurrent processes (a torchrun job, a parallel sweep) never load a
    half-written library. Raises CalledProcessError (the last attempt's) if none compiles."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        for i, extra in enumerate(OPTIONAL_FLAGS):
            command = [*compiler(), *FLAGS, *extra, "-o", tmp, str(SOURCES[0])]
            try:
                subprocess.run(command, check=True, capture_output=True, text=True)
                if os.path.getsize(tmp) == 0:  # e.g. CC=true: "succeeds" without writing anything
                    raise OSError(f"{' '.join(compiler())} wrote an empty library")
                break
            except (OSError, subprocess.CalledProcessError):
                if i == len(OPTIONAL_FLAGS) - 1:
                    raise
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def library_path() -> Path:
    """The cached library's path: named by a hash of the sources and of the CPU."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES) + cpu_signature()).hexdigest()
    return cache_dir() / f"native-{digest[:16]}.so"


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on first use; None (with one warning) where they cannot be built."""
    if os.environ.get("NORMLAB_NATIVE", "1") == "0":
        return None
    target = library_path()
    try:
        if not target.exists() or target.stat().st_size == 0:
            build(target)
        try:
            lib = ctypes.CDLL(str(target))
        except OSError:  # a damaged cached library (truncated, another machine's): build it again, once
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


def nhwc(x: torch.Tensor) -> bool:
    """Whether x (N, C, M) is a channels_last tensor's view, (N, M, C) in memory, rather than contiguous."""
    return not x.is_contiguous() and x.dim() == 3 and x.transpose(1, 2).is_contiguous()


def usable(x: torch.Tensor, *tensors: torch.Tensor) -> bool:
    """Whether the compiled kernels take this call: CPU, float32 or float64 throughout, contiguous (x may also be
    channels_last, see nhwc), not under torch.compile (which traces the Python Functions instead), and the
    library builds."""
    return (
        x.device.type == "cpu"
        and x.dtype in SUFFIX
        and (x.is_contiguous() or nhwc(x))
        and all(t.dtype == x.dtype and t.is_contiguous() for t in tensors)
        and not torch.compiler.is_compiling()
        and library() is not None
    )


def laid_out(grad: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """grad in the input's memory layout (forward's nhwc(x)), for the backward kernels that read both."""
    return grad.transpose(1, 2).contiguous().transpose(1, 2) if channels_last else grad.contiguous()


def call(name: str, dtype: torch.dtype, *args) -> None:
    """Run kernel `name` for `dtype` on torch's thread count; tensors are passed as pointers to their data."""
    pointers = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
    getattr(library(), name + SUFFIX[dtype])(*pointers, torch.get_num_threads())


class BatchInstanceNormNative(torch.autograd.Function):
    """BatchInstanceNormFunction's forward and backward as two compiled calls (x (N, C, M) contiguous or
    channels_last, CPU, one process); the same output, and with `batch_stats` it updates the running statistics and
    `num_batches_tracked` itself (with `momentum`), as F.batch_norm does."""

    @staticmethod
    def forward(ctx, x, gate, weight, bias, running_mean, running_var, num_batches_tracked, eps, batch_stats, momentum):
        n, c, m = x.shape
        y, scale = torch.empty_like(x), x.new_empty(n, c)
        stats = x.new_empty(2, 2, n, c, dtype=torch.float64)  # the statistics, in double
        ctx.nhwc = nhwc(x)
        call("bin_forward", x.dtype, x, gate, weight, bias, running_mean, running_var, num_batches_tracked, n, c, m,
             ctx.nhwc, eps, batch_stats, momentum, y, stats, scale)  # fmt: skip
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
        grad = laid_out(grad, ctx.nhwc)
        call("bin_backward", x.dtype, grad, x, gate, weight, stats, scale, n, c, m, ctx.nhwc, ctx.eps,
             ctx.batch_stats, dx, d_gate, d_weight, d_bias)  # fmt: skip
        return dx, d_gate, d_weight, d_bias, *[None] * 6


class SwitchableNormNative(torch.autograd.Function):
    """SwitchableNormFunction's forward and backward as two compiled calls (x (N, C, M) contiguous or
    channels_last, CPU, one process); the same output, and with `batch_stats` it updates the running statistics
    itself (`momentum`)."""

    @staticmethod
    def forward(
        ctx, x, mean_logits, var_logits, weight, bias, running_mean, running_var, eps, batch_stats, momentum, statistics
    ):
        n, c, m = x.shape
        has_in = statistics[0] == "in"
        y = torch.empty_like(x)
        stats = x.new_empty(2, len(statistics), n, c, dtype=torch.float64)  # the statistics, in double
        mixed = x.new_empty(3, n, c, dtype=torch.float64)  # mixed mean, 1 / sqrt(var + eps), row mean
        ctx.nhwc = nhwc(x)
        call("sn_forward", x.dtype, x, mean_logits, var_logits, weight, bias, running_mean, running_var, n, c, m,
             ctx.nhwc, eps, batch_stats, momentum, has_in, y, stats, mixed)  # fmt: skip
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
        grad = laid_out(grad, ctx.nhwc)
        call("sn_backward", x.dtype, grad, x, mean_logits, var_logits, weight, stats, mixed, n, c, m, ctx.nhwc,
             ctx.batch_stats, ctx.has_in, dx, d_mean_logits, d_var_logits, d_weight, d_bias)  # fmt: skip
        return dx, d_mean_logits, d_var_logits, d_weight, d_bias, *[None] * 6


class NormLSTMStepNative(torch.autograd.Function):
    """One step of NormLSTM with LN or stepwise BN (gates = xw + N_h(hw), c = f c_prev + i g,
    h = o tanh(N_c(c))) as two compiled calls: (xw_t, hw = W_h h_prev, c_prev, the norms' gains and biases)
    -> (h, c). `running_h`, `running_c`: the step's BN running (mean, var), updated in training, or (None, None)
    for LN. One autograd node per step instead of ~12 small ops; the forward's sigmoid and tanh are torch's."""

    @staticmethod
    def forward(ctx, xw, hw, c_prev, w_h, b_h, w_c, b_c, running_h, running_c, batch_norm, batch_stats, momentum, eps):
        n, hidden = c_prev.shape
        act, hw_hat = hw.new_empty(2, n, 4 * hidden)
        c, tanh_c, c_hat = c_prev.new_empty(3, n, hidden)
        inv_h, inv_c = hw.new_empty(4 * hidden if batch_norm else n), hw.new_empty(hidden if batch_norm else n)
        call("lstm_gates_forward", xw.dtype, xw, xw.stride(0), hw, w_h, b_h, *running_h, n, hidden, batch_norm,
             batch_stats, momentum, eps[0], act, hw_hat, inv_h)  # fmt: skip
        act.sigmoid_()  # torch's vectorized sigmoid, in place; g's tanh is 2 sigmoid(2g) - 1
        call("lstm_cell_forward", xw.dtype, act, c_prev, w_c, b_c, *running_c, n, hidden, batch_norm, batch_stats,
             momentum, eps[1], c, tanh_c, c_hat, inv_c)  # fmt: skip
        h = act[:, 2 * hidden : 3 * hidden] * tanh_c.tanh_()
        ctx.save_for_backward(c_prev, w_h, w_c, act, hw_hat, c_hat, tanh_c, inv_h, inv_c)
        ctx.batch_norm, ctx.batch_stats = batch_norm, batch_stats
        ctx.set_materialize_grads(False)
        return h, c

    @staticmethod
    def backward(ctx, dh, dc):
        c_prev, w_h, w_c, act, hw_hat, c_hat, tanh_c, inv_h, inv_c = ctx.saved_tensors
        if dh is None and dc is None:
            return (None,) * 13
        n, hidden = c_prev.shape
        dh = torch.zeros_like(c_prev) if dh is None else dh.contiguous()
        dc = None if dc is None else dc.contiguous()
        d_xw, d_hw = act.new_empty(2, n, 4 * hidden)
        d_c_prev = torch.empty_like(c_prev)
        d_w_h, d_b_h = w_h.new_empty(2, 4 * hidden)
        d_w_c, d_b_c = w_c.new_empty(2, hidden)
        call("lstm_step_backward", act.dtype, dh, dc, c_prev, w_h, w_c, act, hw_hat, c_hat, tanh_c, inv_h, inv_c, n,
             hidden, ctx.batch_norm, ctx.batch_stats, d_xw, d_hw, d_c_prev, d_w_h, d_b_h, d_w_c, d_b_c)  # fmt: skip
        return d_xw, d_hw, d_c_prev, d_w_h, d_b_h, d_w_c, d_b_c, *[None] * 6
