"""Compiled CPU kernels: Batch-Instance Norm, Switchable Norm and the normalized LSTM's step (native.c).

At small batches the Python Functions of BIN and SN spend most of their time dispatching ~50 small ops per layer
(3.3-3.6x nn.BatchNorm2d at batch 2); in C each is one call per forward and one per backward. The LN/BN-LSTM
cell's ~12 autograd ops per step become one node. The library is compiled on first use (~2 s) with the first of
COMPILERS on PATH (never $CC, which a job's environment could set) into $NORMLAB_CACHE (default ~/.cache/normlab),
named by a hash of its sources and of the CPU's features, and loaded with ctypes only if it is the one this user's
build recorded (owner, permissions, SHA-256): no torch headers, no build step at install. Each kernel is wrapped as a
functional torch.library custom op (`normlab::bin_forward`, ...: it returns the updated running statistics instead
of writing the layer's buffers), with a fake implementation and its backward as an op, so that torch.compile traces
it as one node. Without a compiler, or with NORMLAB_NATIVE=0, the layers use their Python code (same formulas; the
tests run both).
"""

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import stat
import subprocess
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
COMPILERS = ("cc", "gcc", "clang")
CTYPES = {"P": ctypes.c_void_p, "L": ctypes.c_int64, "d": ctypes.c_double, "i": ctypes.c_int}


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "normlab"
    return Path(os.environ.get("NORMLAB_CACHE") or default)


def compiler() -> str:
    """The first of COMPILERS on PATH: a fixed list, so that no job setting $CC (`hydra.job.env_set.CC=...`) makes
    the build run a command of its choosing."""
    for name in COMPILERS:
        if found := shutil.which(name):
            return found
    raise OSError(f"no C compiler on PATH (tried {', '.join(COMPILERS)})")


def cpu_signature() -> bytes:
    """What -march=native compiles for: the CPU's feature flags where Linux lists them, else the architecture.
    Part of the library's name, so that a cache shared by different machines never loads another CPU's build."""
    try:
        flags = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")]
    except OSError:
        flags = []
    return (flags[0] if flags else platform.machine()).encode()


def build(target: Path) -> None:
    """Compile native.c into `target` with the first of OPTIONAL_FLAGS the compiler takes, and record its SHA-256
    beside it (`record`), atomically (temporary files renamed), so that concurrent processes (a torchrun job, a
    parallel sweep) never load a half-written library. Raises CalledProcessError (the last attempt's) if none
    compiles."""
    target.parent.mkdir(parents=True, exist_ok=True)
    (so_fd, tmp), (digest_fd, digest) = (tempfile.mkstemp(suffix=s, dir=target.parent) for s in (".so", ".sha256"))
    os.close(so_fd)
    os.close(digest_fd)
    try:
        for i, extra in enumerate(OPTIONAL_FLAGS):
            command = [compiler(), *FLAGS, *extra, "-o", tmp, str(SOURCES[0])]
            try:
                subprocess.run(command, check=True, capture_output=True, text=True)
                if os.path.getsize(tmp) == 0:  # e.g. a "compiler" that succeeds without writing anything
                    raise OSError(f"{command[0]} wrote an empty library")
                break
            except (OSError, subprocess.CalledProcessError):
                if i == len(OPTIONAL_FLAGS) - 1:
                    raise
        Path(digest).write_text(hashlib.sha256(Path(tmp).read_bytes()).hexdigest())
        os.chmod(tmp, 0o755)  # whatever the umask: `load` refuses a library others may write
        os.chmod(digest, 0o644)
        os.replace(tmp, target)
        os.replace(digest, record(target))
    finally:
        for path in (tmp, digest):
            Path(path).unlink(missing_ok=True)


def record(target: Path) -> Path:
    """Where the build writes the library's SHA-256."""
    return target.with_suffix(".sha256")


def load(target: Path) -> ctypes.CDLL:
    """The cached library, if it is the one this user's build recorded: owned by this user, writable by no one
    else, its bytes hashing to the record beside it (which passes the same checks). Read and loaded through one
    open descriptor (Linux), so that a file swapped in between is never the one loaded. OSError otherwise."""

    def checked(path: Path) -> int:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            os.close(fd)
            raise OSError(f"{path}: not a file of this user's that only this user may write")
        return fd

    fd = checked(target)
    try:
        with os.fdopen(os.dup(fd), "rb") as library, os.fdopen(checked(record(target)), "r") as expected:
            if hashlib.sha256(library.read()).hexdigest() != expected.read(100).strip():
                raise OSError(f"{target}: its SHA-256 is not the one its build recorded")
        through_fd = Path(f"/proc/self/fd/{fd}")
        return ctypes.CDLL(str(through_fd if through_fd.exists() else target))
    finally:
        os.close(fd)


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
        try:
            lib = load(target)
        except OSError:  # none yet, or damaged, planted or another user's: build it (again), once
            build(target)
            lib = load(target)
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
    channels_last, see nhwc), and the library builds. Under torch.compile too: each kernel is a custom op
    (`normlab::...`) with a fake implementation, so the compiler traces it as one node."""
    return (
        x.device.type == "cpu"
        and x.dtype in SUFFIX
        and (x.is_contiguous() or nhwc(x))
        and all(t.dtype == x.dtype and t.is_contiguous() for t in tensors)
        and available()
    )


@torch.compiler.assume_constant_result  # traced as its value: torch.compile does not step into the build
def available() -> bool:
    """Whether the compiled kernels built (or were built before) and loaded."""
    return library() is not None


def laid_out(grad: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """grad in the input's memory layout (forward's nhwc(x)), for the backward kernels that read both."""
    return grad.transpose(1, 2).contiguous().transpose(1, 2) if channels_last else grad.contiguous()


def call(name: str, dtype: torch.dtype, *args) -> None:
    """Run kernel `name` for `dtype` on torch's thread count; tensors are passed as pointers to their data, None
    as NULL (an output not asked for)."""
    pointers = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
    getattr(library(), name + SUFFIX[dtype])(*pointers, torch.get_num_threads())


# Two doors to each kernel. Eager: a plain autograd Function whose kernel updates the running statistics in
# place, as F.batch_norm does (the dispatcher's path to a Python custom op costs ~0.1 ms per layer, forward and
# backward: bench measured BIN at batch 2 1.9x slower through it, the LSTM step 1.4x). Under torch.compile: a
# functional torch.library custom op (it writes only what it allocates and returns the updated running statistics,
# which the caller copies into its buffers), with a fake implementation and its backward as an op of its own, so
# that the compiler traces each call as one node and torch.library.opcheck can check it.
Tensor = torch.Tensor
BATCHES = torch.zeros((), dtype=torch.int64)  # where the op's BIN kernel counts batches (its caller counts its own)


def updated_copies(running_mean: Tensor, running_var: Tensor, batch_stats: bool) -> tuple[Tensor, Tensor, Tensor]:
    """For an op's kernel: with `batch_stats` a copy (2, C) of the running (mean; var) and its rows, which the
    kernel updates and the op returns; else an empty tensor and the running ones themselves (only read)."""
    if not batch_stats:
        return running_mean.new_empty(0), running_mean, running_var
    running = torch.stack([running_mean, running_var])
    return running, running[0], running[1]


def _bin_kernel(x, gate, weight, bias, means, variances, tracked, eps, batch_stats, momentum):
    """y, the statistics (2, 2, N, C) and the scale (N, C) its backward reads; with `batch_stats` `means` and
    `variances` are updated and `tracked` counts one more batch."""
    n, c, m = x.shape
    y, scale = torch.empty_like(x), x.new_empty(n, c)
    stats = x.new_empty(2, 2, n, c, dtype=torch.float64)  # the statistics, in double
    call(
        "bin_forward",
        x.dtype,
        x,
        gate,
        weight,
        bias,
        means,
        variances,
        tracked,
        n,
        c,
        m,
        nhwc(x),
        eps,
        batch_stats,
        momentum,
        y,
        stats,
        scale,
    )
    return y, stats, scale


def _bin_forward(
    x: Tensor,
    gate: Tensor,
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    eps: float,
    batch_stats: bool,
    momentum: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Batch-Instance Norm of x (N, C, M), contiguous or channels_last: y, the statistics and scale its backward
    reads, and with `batch_stats` the running (mean; var) (2, C) after this batch (else empty: only read)."""
    running, means, variances = updated_copies(running_mean, running_var, batch_stats)
    return *_bin_kernel(x, gate, weight, bias, means, variances, BATCHES, eps, batch_stats, momentum), running


bin_forward = torch.library.custom_op("normlab::bin_forward", _bin_forward, mutates_args=(), device_types="cpu")


@bin_forward.register_fake
def _(x, gate, weight, bias, running_mean, running_var, eps, batch_stats, momentum):
    n, c, _ = x.shape
    running = x.new_empty(2, c) if batch_stats else x.new_empty(0)
    return torch.empty_like(x), x.new_empty(2, 2, n, c, dtype=torch.float64), x.new_empty(n, c), running


def _bin_backward(
    grad: Tensor,
    x: Tensor,
    gate: Tensor,
    weight: Tensor,
    stats: Tensor,
    scale: Tensor,
    eps: float,
    batch_stats: bool,
    input_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """bin_forward's gradients: dx (empty unless `input_grad`), d gate, d weight, d bias."""
    n, c, m = x.shape
    dx = torch.empty_like(x) if input_grad else x.new_empty(0)
    d_gate, d_weight, d_bias = x.new_empty(c), x.new_empty(c), x.new_empty(c)
    channels_last = nhwc(x)
    call(
        "bin_backward",
        x.dtype,
        laid_out(grad, channels_last),
        x,
        gate,
        weight,
        stats,
        scale,
        n,
        c,
        m,
        channels_last,
        eps,
        batch_stats,
        dx if input_grad else None,
        d_gate,
        d_weight,
        d_bias,
    )
    return dx, d_gate, d_weight, d_bias


bin_backward = torch.library.custom_op("normlab::bin_backward", _bin_backward, mutates_args=(), device_types="cpu")


@bin_backward.register_fake
def _(grad, x, gate, weight, stats, scale, eps, batch_stats, input_grad):
    c = x.shape[1]
    return torch.empty_like(x) if input_grad else x.new_empty(0), x.new_empty(c), x.new_empty(c), x.new_empty(c)


def _bin_save(ctx, x, gate, weight, stats, scale, eps, batch_stats):
    ctx.save_for_backward(x, gate, weight, stats, scale)
    ctx.eps, ctx.batch_stats = eps, batch_stats


def _bin_grad(ctx, grad, backward) -> tuple:
    """(dx, d gate, d weight, d bias), or Nones where no gradient reached y."""
    if grad is None:
        return (None,) * 4
    x, gate, weight, stats, scale = ctx.saved_tensors
    input_grad = ctx.needs_input_grad[0]
    dx, d_gate, d_weight, d_bias = backward(grad, x, gate, weight, stats, scale, ctx.eps, ctx.batch_stats, input_grad)
    return dx if input_grad else None, d_gate, d_weight, d_bias


def _bin_setup(ctx, inputs, output):
    x, gate, weight = inputs[:3]
    _bin_save(ctx, x, gate, weight, output[1], output[2], inputs[6], inputs[7])


bin_forward.register_autograd(
    lambda ctx, grad, *_: (*_bin_grad(ctx, grad, bin_backward), *[None] * 5), setup_context=_bin_setup
)


class BatchInstanceNormNative(torch.autograd.Function):
    """BIN in eager mode: the kernel updates the running statistics and num_batches_tracked itself."""

    @staticmethod
    def forward(ctx, x, gate, weight, bias, running_mean, running_var, num_batches_tracked, eps, batch_stats, momentum):
        y, stats, scale = _bin_kernel(
            x, gate, weight, bias, running_mean, running_var, num_batches_tracked, eps, batch_stats, momentum
        )
        _bin_save(ctx, x, gate, weight, stats, scale, eps, batch_stats)
        ctx.set_materialize_grads(False)
        return y

    @staticmethod
    def backward(ctx, grad):
        return *_bin_grad(ctx, grad, _bin_backward), *[None] * 6


def batch_instance_norm(
    x, gate, weight, bias, running_mean, running_var, num_batches_tracked, eps, batch_stats, momentum
) -> Tensor:
    """BIN of x (N, C, M); with `batch_stats` the running statistics and num_batches_tracked updated, as
    F.batch_norm does: in place in eager mode, from the op's returned values under torch.compile."""
    if not torch.compiler.is_compiling():
        return BatchInstanceNormNative.apply(
            x, gate, weight, bias, running_mean, running_var, num_batches_tracked, eps, batch_stats, momentum
        )
    y, _, _, running = bin_forward(x, gate, weight, bias, running_mean, running_var, eps, batch_stats, momentum)
    if batch_stats:
        with torch.no_grad():
            running_mean.copy_(running[0]), running_var.copy_(running[1]), num_batches_tracked.add_(1)
    return y


def _sn_kernel(x, mean_logits, var_logits, weight, bias, means, variances, eps, batch_stats, momentum, has_in):
    """y, the statistics (2, K, N, C) and the mixed ones (3, N, C) its backward reads; with `batch_stats` `means`
    and `variances` are updated."""
    n, c, m = x.shape
    y = torch.empty_like(x)
    stats = x.new_empty(2, len(mean_logits), n, c, dtype=torch.float64)
    mixed = x.new_empty(3, n, c, dtype=torch.float64)  # mixed mean, 1 / sqrt(var + eps), row mean
    call(
        "sn_forward",
        x.dtype,
        x,
        mean_logits,
        var_logits,
        weight,
        bias,
        means,
        variances,
        n,
        c,
        m,
        nhwc(x),
        eps,
        batch_stats,
        momentum,
        has_in,
        y,
        stats,
        mixed,
    )
    return y, stats, mixed


def _sn_forward(
    x: Tensor,
    mean_logits: Tensor,
    var_logits: Tensor,
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    eps: float,
    batch_stats: bool,
    momentum: float,
    has_in: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Switchable Norm of x (N, C, M), contiguous or channels_last, over its K statistics (K = mean_logits'
    length; IN first where `has_in`, then LN, BN): y, the statistics and mixed ones its backward reads, and with
    `batch_stats` the running (mean; var) (2, C) after this batch (else empty)."""
    running, means, variances = updated_copies(running_mean, running_var, batch_stats)
    outputs = _sn_kernel(x, mean_logits, var_logits, weight, bias, means, variances, eps, batch_stats, momentum, has_in)
    return *outputs, running


sn_forward = torch.library.custom_op("normlab::sn_forward", _sn_forward, mutates_args=(), device_types="cpu")


@sn_forward.register_fake
def _(x, mean_logits, var_logits, weight, bias, running_mean, running_var, eps, batch_stats, momentum, has_in):
    n, c, _ = x.shape
    stats = x.new_empty(2, len(mean_logits), n, c, dtype=torch.float64)
    running = x.new_empty(2, c) if batch_stats else x.new_empty(0)
    return torch.empty_like(x), stats, x.new_empty(3, n, c, dtype=torch.float64), running


def _sn_backward(
    grad: Tensor,
    x: Tensor,
    mean_logits: Tensor,
    var_logits: Tensor,
    weight: Tensor,
    stats: Tensor,
    mixed: Tensor,
    batch_stats: bool,
    has_in: bool,
    input_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """sn_forward's gradients: dx (empty unless `input_grad`), d mean_logits, d var_logits, d weight, d bias."""
    n, c, m = x.shape
    dx = torch.empty_like(x) if input_grad else x.new_empty(0)
    d_mean_logits, d_var_logits = torch.empty_like(mean_logits), torch.empty_like(var_logits)
    d_weight, d_bias = x.new_empty(c), x.new_empty(c)
    channels_last = nhwc(x)
    call(
        "sn_backward",
        x.dtype,
        laid_out(grad, channels_last),
        x,
        mean_logits,
        var_logits,
        weight,
        stats,
        mixed,
        n,
        c,
        m,
        channels_last,
        batch_stats,
        has_in,
        dx if input_grad else None,
        d_mean_logits,
        d_var_logits,
        d_weight,
        d_bias,
    )
    return dx, d_mean_logits, d_var_logits, d_weight, d_bias


sn_backward = torch.library.custom_op("normlab::sn_backward", _sn_backward, mutates_args=(), device_types="cpu")


@sn_backward.register_fake
def _(grad, x, mean_logits, var_logits, weight, stats, mixed, batch_stats, has_in, input_grad):
    c = x.shape[1]
    dx = torch.empty_like(x) if input_grad else x.new_empty(0)
    return dx, torch.empty_like(mean_logits), torch.empty_like(var_logits), x.new_empty(c), x.new_empty(c)


def _sn_save(ctx, x, mean_logits, var_logits, weight, stats, mixed, batch_stats, has_in):
    ctx.save_for_backward(x, mean_logits, var_logits, weight, stats, mixed)
    ctx.batch_stats, ctx.has_in = batch_stats, has_in


def _sn_grad(ctx, grad, backward) -> tuple:
    """(dx, d mean_logits, d var_logits, d weight, d bias), or Nones where no gradient reached y."""
    if grad is None:
        return (None,) * 5
    x, mean_logits, var_logits, weight, stats, mixed = ctx.saved_tensors
    input_grad = ctx.needs_input_grad[0]
    grads = backward(grad, x, mean_logits, var_logits, weight, stats, mixed, ctx.batch_stats, ctx.has_in, input_grad)
    return grads[0] if input_grad else None, *grads[1:]


def _sn_setup(ctx, inputs, output):
    x, mean_logits, var_logits, weight = inputs[:4]
    _sn_save(ctx, x, mean_logits, var_logits, weight, output[1], output[2], inputs[8], inputs[10])


sn_forward.register_autograd(
    lambda ctx, grad, *_: (*_sn_grad(ctx, grad, sn_backward), *[None] * 6), setup_context=_sn_setup
)


class SwitchableNormNative(torch.autograd.Function):
    """SN in eager mode: the kernel updates the running statistics itself."""

    @staticmethod
    def forward(
        ctx, x, mean_logits, var_logits, weight, bias, running_mean, running_var, eps, batch_stats, momentum, has_in
    ):
        y, stats, mixed = _sn_kernel(
            x, mean_logits, var_logits, weight, bias, running_mean, running_var, eps, batch_stats, momentum, has_in
        )
        _sn_save(ctx, x, mean_logits, var_logits, weight, stats, mixed, batch_stats, has_in)
        ctx.set_materialize_grads(False)
        return y

    @staticmethod
    def backward(ctx, grad):
        return *_sn_grad(ctx, grad, _sn_backward), *[None] * 6


def switchable_norm(
    x, mean_logits, var_logits, weight, bias, running_mean, running_var, eps, batch_stats, momentum, has_in
) -> Tensor:
    """SN of x (N, C, M); with `batch_stats` the running statistics updated: in place in eager mode, from the
    op's returned values under torch.compile."""
    args = (x, mean_logits, var_logits, weight, bias, running_mean, running_var, eps, batch_stats, momentum, has_in)
    if not torch.compiler.is_compiling():
        return SwitchableNormNative.apply(*args)
    y, _, _, running = sn_forward(*args)
    if batch_stats:
        with torch.no_grad():
            running_mean.copy_(running[0]), running_var.copy_(running[1])
    return y


def _lstm_kernel(xw, hw, c_prev, w_h, b_h, w_c, b_c, running, batch_stats, momentum, eps_h, eps_c):
    """h, c and what the backward reads (act, hw_hat, c_hat, tanh_c, inv_h, inv_c); `running`: the step's BN
    (mean_h, var_h, mean_c, var_c), updated with `batch_stats`, or four Nones for LN."""
    n, hidden = c_prev.shape
    batch_norm = running[0] is not None
    act, hw_hat = hw.new_empty(n, 4 * hidden), hw.new_empty(n, 4 * hidden)
    c, tanh_c, c_hat = c_prev.new_empty(n, hidden), c_prev.new_empty(n, hidden), c_prev.new_empty(n, hidden)
    inv_h, inv_c = hw.new_empty(4 * hidden if batch_norm else n), hw.new_empty(hidden if batch_norm else n)
    call(
        "lstm_gates_forward",
        xw.dtype,
        xw,
        xw.stride(0),
        hw,
        w_h,
        b_h,
        *running[:2],
        n,
        hidden,
        batch_norm,
        batch_stats,
        momentum,
        eps_h,
        act,
        hw_hat,
        inv_h,
    )
    act.sigmoid_()  # torch's vectorized sigmoid, in place; g's tanh is 2 sigmoid(2g) - 1
    call(
        "lstm_cell_forward",
        xw.dtype,
        act,
        c_prev,
        w_c,
        b_c,
        *running[2:],
        n,
        hidden,
        batch_norm,
        batch_stats,
        momentum,
        eps_c,
        c,
        tanh_c,
        c_hat,
        inv_c,
    )
    h = act[:, 2 * hidden : 3 * hidden] * tanh_c.tanh_()
    return h, c, act, hw_hat, c_hat, tanh_c, inv_h, inv_c


def _lstm_step(
    xw: Tensor,
    hw: Tensor,
    c_prev: Tensor,
    w_h: Tensor,
    b_h: Tensor,
    w_c: Tensor,
    b_c: Tensor,
    mean_h: Tensor | None,
    var_h: Tensor | None,
    mean_c: Tensor | None,
    var_c: Tensor | None,
    batch_stats: bool,
    momentum: float,
    eps_h: float,
    eps_c: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One step of NormLSTM with LN or, given the step's running means and variances of the gates' (4H) and the
    cell's (H) norms, stepwise BN: gates = xw + N_h(hw), c = f c_prev + i g, h = o tanh(N_c(c)). Returns h, c,
    what its backward reads and, for BN with `batch_stats`, each norm's running (mean; var) after this batch,
    (2, 4H) and (2, H) (else empty: only read)."""
    given = [t for t in (mean_h, var_h, mean_c, var_c) if t is not None]
    updated = bool(given) and batch_stats
    new_h = torch.stack(given[:2]) if updated else hw.new_empty(0)  # the kernels update these copies
    new_c = torch.stack(given[2:]) if updated else hw.new_empty(0)
    running = (new_h[0], new_h[1], new_c[0], new_c[1]) if updated else (mean_h, var_h, mean_c, var_c)
    outputs = _lstm_kernel(xw, hw, c_prev, w_h, b_h, w_c, b_c, running, batch_stats, momentum, eps_h, eps_c)
    return *outputs, new_h, new_c


lstm_step = torch.library.custom_op("normlab::lstm_step", _lstm_step, mutates_args=(), device_types="cpu")


@lstm_step.register_fake
def _(xw, hw, c_prev, w_h, b_h, w_c, b_c, mean_h, var_h, mean_c, var_c, batch_stats, momentum, eps_h, eps_c):
    n, hidden = c_prev.shape
    batch_norm = mean_h is not None
    gates, cell = hw.new_empty(n, 4 * hidden), c_prev.new_empty(n, hidden)
    inv_h, inv_c = hw.new_empty(4 * hidden if batch_norm else n), hw.new_empty(hidden if batch_norm else n)
    updated = batch_norm and batch_stats
    new_h = hw.new_empty(2, 4 * hidden) if updated else hw.new_empty(0)
    new_c = hw.new_empty(2, hidden) if updated else hw.new_empty(0)
    return (
        cell,
        torch.empty_like(cell),
        gates,
        torch.empty_like(gates),
        torch.empty_like(cell),
        torch.empty_like(cell),
        inv_h,
        inv_c,
        new_h,
        new_c,
    )


def _lstm_step_backward(
    dh: Tensor,
    dc: Tensor | None,
    c_prev: Tensor,
    w_h: Tensor,
    w_c: Tensor,
    act: Tensor,
    hw_hat: Tensor,
    c_hat: Tensor,
    tanh_c: Tensor,
    inv_h: Tensor,
    inv_c: Tensor,
    batch_norm: bool,
    batch_stats: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """lstm_step's gradients: d xw, d hw, d c_prev, d w_h, d b_h, d w_c, d b_c."""
    n, hidden = c_prev.shape
    d_xw, d_hw, d_c_prev = act.new_empty(n, 4 * hidden), act.new_empty(n, 4 * hidden), torch.empty_like(c_prev)
    d_w_h, d_b_h = w_h.new_empty(4 * hidden), w_h.new_empty(4 * hidden)
    d_w_c, d_b_c = w_c.new_empty(hidden), w_c.new_empty(hidden)
    call(
        "lstm_step_backward",
        act.dtype,
        dh.contiguous(),
        None if dc is None else dc.contiguous(),
        c_prev,
        w_h,
        w_c,
        act,
        hw_hat,
        c_hat,
        tanh_c,
        inv_h,
        inv_c,
        n,
        hidden,
        batch_norm,
        batch_stats,
        d_xw,
        d_hw,
        d_c_prev,
        d_w_h,
        d_b_h,
        d_w_c,
        d_b_c,
    )
    return d_xw, d_hw, d_c_prev, d_w_h, d_b_h, d_w_c, d_b_c


lstm_step_backward = torch.library.custom_op(
    "normlab::lstm_step_backward", _lstm_step_backward, mutates_args=(), device_types="cpu"
)


@lstm_step_backward.register_fake
def _(dh, dc, c_prev, w_h, w_c, act, hw_hat, c_hat, tanh_c, inv_h, inv_c, batch_norm, batch_stats):
    n, hidden = c_prev.shape
    gates, cell = act.new_empty(n, 4 * hidden), c_prev.new_empty(n, hidden)
    return (
        gates,
        torch.empty_like(gates),
        cell,
        w_h.new_empty(4 * hidden),
        w_h.new_empty(4 * hidden),
        w_c.new_empty(hidden),
        w_c.new_empty(hidden),
    )


def _lstm_save(ctx, c_prev, w_h, w_c, saved, batch_norm, batch_stats):
    ctx.save_for_backward(c_prev, w_h, w_c, *saved)
    ctx.batch_norm, ctx.batch_stats = batch_norm, batch_stats


def _lstm_grad(ctx, dh, dc, backward) -> tuple:
    """(d xw, d hw, d c_prev, d w_h, d b_h, d w_c, d b_c), or Nones where no gradient reached h or c."""
    if dh is None and dc is None:
        return (None,) * 7
    c_prev, w_h, w_c, act, hw_hat, c_hat, tanh_c, inv_h, inv_c = ctx.saved_tensors
    dh = torch.zeros_like(c_prev) if dh is None else dh
    return backward(dh, dc, c_prev, w_h, w_c, act, hw_hat, c_hat, tanh_c, inv_h, inv_c, ctx.batch_norm, ctx.batch_stats)


def _lstm_setup(ctx, inputs, output):
    c_prev, w_h, w_c, mean_h, batch_stats = inputs[2], inputs[3], inputs[5], inputs[7], inputs[11]
    _lstm_save(ctx, c_prev, w_h, w_c, output[2:8], mean_h is not None, batch_stats)


lstm_step.register_autograd(
    lambda ctx, dh, dc, *_: (*_lstm_grad(ctx, dh, dc, lstm_step_backward), *[None] * 8), setup_context=_lstm_setup
)


class NormLSTMStepNative(torch.autograd.Function):
    """The LSTM step in eager mode: the kernels update the step's BN running statistics (views) themselves."""

    @staticmethod
    def forward(
        ctx, xw, hw, c_prev, w_h, b_h, w_c, b_c, mean_h, var_h, mean_c, var_c, batch_stats, momentum, eps_h, eps_c
    ):
        outputs = _lstm_kernel(
            xw, hw, c_prev, w_h, b_h, w_c, b_c, (mean_h, var_h, mean_c, var_c), batch_stats, momentum, eps_h, eps_c
        )
        _lstm_save(ctx, c_prev, w_h, w_c, outputs[2:], mean_h is not None, batch_stats)
        ctx.set_materialize_grads(False)
        return outputs[0], outputs[1]

    @staticmethod
    def backward(ctx, dh, dc):
        return *_lstm_grad(ctx, dh, dc, _lstm_step_backward), *[None] * 8


def norm_lstm_step(
    xw, hw, c_prev, w_h, b_h, w_c, b_c, mean_h, var_h, mean_c, var_c, batch_stats, momentum, eps_h, eps_c
) -> tuple[Tensor, Tensor]:
    """One NormLSTM step, (h, c); with BN in training the step's running statistics updated: in place in eager
    mode, from the op's returned values under torch.compile."""
    running = (mean_h, var_h, mean_c, var_c)
    args = (xw, hw, c_prev, w_h, b_h, w_c, b_c, *running, batch_stats, momentum, eps_h, eps_c)
    if not torch.compiler.is_compiling():
        return NormLSTMStepNative.apply(*args)
    h, c, *_, new_h, new_c = lstm_step(*args)
    if mean_h is not None and batch_stats:
        with torch.no_grad():
            for buffer, new in zip(running, (*new_h, *new_c), strict=True):
                buffer.copy_(new)
    return h, c
