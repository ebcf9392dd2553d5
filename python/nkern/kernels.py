"""Architectures and their NNGP / NTK kernel matrices (include/nkern.h)."""
import warnings

import numpy as np

from ._lib import ffi, lib, call, new_error, InArray, InputError, Progress, to_numpy, free_array, GET


def _arch_opts(w_std=None, b_std=None, param=None, width=None, quad=None):
    """nk_arch_opts from keyword overrides of the library's defaults (those of the CLI's
    --w-std, --b-std, --param, --width, --quad)."""
    o = ffi.new("nk_arch_opts *")
    lib.nk_arch_opts_default(o)
    if w_std is not None:
        o.w_std = float(w_std)
    if b_std is not None:
        o.b_std = float(b_std)
    if param is not None:
        if param not in ("ntk", "standard"):
            raise InputError("param: %r (use 'ntk' or 'standard')" % (param,), 2)
        o.param = 0 if param == "ntk" else 1
    if width is not None:
        o.width = float(width)
    if quad is not None:
        o.quad_order = int(quad)
    return o


def _shape(input_shape):
    """A sample's shape: an int D, or a tuple (D,), (L, C), (H, W, C), or "28x28x1"."""
    if isinstance(input_shape, str):
        try:
            input_shape = tuple(int(s) for s in input_shape.split("x"))
        except ValueError:
            raise InputError("input_shape: %r (use D, LxC or HxWxC, e.g. '28x28x1')" % input_shape, 2) from None
    elif np.ndim(input_shape) == 0:
        input_shape = (int(input_shape),)
    shape = tuple(int(n) for n in input_shape)
    if not 1 <= len(shape) <= 3 or min(shape) < 1:
        raise InputError("input_shape: %r (one sample: (D,), (L, C) or (H, W, C), sizes >= 1)" % (input_shape,), 2)
    return shape


def _f32(precision):
    if precision not in ("f64", "f32"):
        raise InputError("precision: %r (use 'f64' or 'f32')" % (precision,), 2)
    return 1 if precision == "f32" else 0


class Arch:
    """A parsed architecture spec, e.g. Arch("w=1.41 b=0.1 [conv(3) relu]*3 gap dense").

    Keyword options set the global defaults (as the CLI's --w-std, --b-std, --param, --width,
    --quad); a spec's own `w=`, `b=`, ... take precedence.  The spec language is in
    docs/spec.md.  Plans (the spec bound to an input shape) are made on demand and kept."""

    def __init__(self, spec, *, w_std=None, b_std=None, param=None, width=None, quad=None):
        if isinstance(spec, Arch):
            spec = spec.spec
        if not isinstance(spec, str):
            raise InputError("spec: expected a string such as '[conv(3) relu]*3 gap dense', got %s"
                             % type(spec).__name__, 2)
        self.spec = spec
        self._opts = _arch_opts(w_std, b_std, param, width, quad)
        out = ffi.new("nk_arch **")
        call(lib.nk_arch_parse, spec.encode(), self._opts, out)
        self._arch = ffi.gc(out[0], lib.nk_arch_free)
        self._plans = {}

    def __repr__(self):
        return "nkern.Arch(%r)" % self.spec

    def _plan(self, input_shape):
        shape = _shape(input_shape)
        plan = self._plans.get(shape)
        if plan is None:
            out = ffi.new("nk_plan **")
            call(lib.nk_plan_create, self._arch, len(shape), ffi.new("size_t[]", shape), out)
            plan = self._plans[shape] = ffi.gc(out[0], lib.nk_plan_free)
        return plan

    def describe(self, input_shape, n=0, n2=0, threads=None, precision="f64"):
        """The text of `nkern arch SPEC --input SHAPE --n N [--precision P]`: every layer's shape,
        channels and covariance mode, flops per entry and peak memory for an n x n2 matrix (n2 =
        0: the symmetric Gram of n samples) computed in that precision."""
        plan = self._plan(input_shape)
        cap = 1 << 20
        buf = ffi.new("char[]", cap)
        lib.nk_plan_describe_prec(plan, int(n), int(n2), int(threads or 0), _f32(precision), buf, cap)
        return ffi.string(buf).decode()

    def seconds(self, input_shape, n, n2=0, threads=None, input_ms=1.0, precision="f64", shift=0):
        """Estimated wall time in seconds of an n x n2 kernel (n2 = 0: Gram) on `threads`
        threads (default: all cores), from calibrated per-op costs (nk_plan_seconds; about +-2x);
        input_ms is the inputs' mean square (raw 0..255 pixels: ~1e4); shift: each entry over
        the translations by 0..shift pixels (kernel(..., augment='shift:S'))."""
        return lib.nk_plan_seconds(self._plan(input_shape), int(n), int(n2), int(threads or 0), float(input_ms),
                                   _f32(precision), int(shift))

    def mehler_reach(self, input_shape, input_ms=1.0):
        """(reach, op): the largest |rho| up to which every tanh, sigmoid, softplus or swish layer
        sums its Mehler series from the stored terms, at the variances of inputs of mean square
        input_ms (nk_plan_mehler_reach), and the 0-based op that sets it (None if no layer
        falls short: reach 1).  Entries past it are integrated one by one (~0.1 s each);
        kernel() warns below 0.9, as `nkern kernel` does."""
        op = ffi.new("int *")
        reach = lib.nk_plan_mehler_reach(self._plan(input_shape), float(input_ms), op)
        return reach, (op[0] if op[0] >= 0 else None)

    def cost(self, input_shape, n, n2=0, threads=None, precision="f64"):
        """Estimates for an n x n2 matrix (n2 = 0: Gram) computed in that precision: dict of
        bytes (peak memory), flops and pair_flops (per kernel entry)."""
        c = ffi.new("nk_cost *")
        lib.nk_plan_cost_prec(self._plan(input_shape), int(n), int(n2), int(threads or 0), _f32(precision), c)
        return {"bytes": c.bytes, "flops": c.flops, "pair_flops": c.pair_flops}

    def kernel(self, x1, x2=None, get="ntk", precision="f64", threads=None, progress=None, augment=None,
               _caller=2):
        """See nkern.kernel (_caller: the stack level the warnings name)."""
        flip, shift = _augment(augment)
        if get not in GET:
            raise InputError("get: %r (use 'nngp', 'ntk' or 'both')" % (get,), 2)
        f32 = _f32(precision)
        a1 = InArray(x1, "x1")
        if a1.array.ndim < 2:
            raise InputError("x1: shape %s has one axis; expected (N, D), (N, L, C) or (N, H, W, C)"
                             % (a1.array.shape,), 2)
        a2 = None
        if x2 is not None:
            a2 = InArray(x2, "x2")
            if a2.array.shape[1:] != a1.array.shape[1:]:
                raise InputError("x1 %s and x2 %s: sample shapes differ (the same architecture needs the "
                                 "same input shape)" % (a1.array.shape, a2.array.shape), 2)
        plan = self._plan(a1.array.shape[1:])
        flat = a1.array.reshape(-1)   # (a view: the mean square without a copy of the data)
        ms = float(np.vdot(flat, flat)) / flat.size if flat.size else 1.0
        reach, op = self.mehler_reach(a1.array.shape[1:], ms if ms > 0 else 1.0)
        if reach < 0.9:
            warnings.warn("inputs of mean square %.3g: the Mehler series of op %d (tanh, sigmoid, softplus or swish) "
                          "covers only |rho| <= %g at this scale; entries above are integrated one by one (~0.1 s "
                          "each; raw pixel values?): scale the inputs, e.g. to [0, 1]" % (ms, op + 1, reach),
                          RuntimeWarning, stacklevel=_caller)
        o = ffi.new("nk_kernel_opts *")
        lib.nk_kernel_opts_default(o)
        o.nthreads = int(threads or 0)
        o.get = GET[get]
        o.f32 = f32
        prog = Progress(progress)
        o.progress = prog.c
        K = ffi.new("nk_array *")
        T = ffi.new("nk_array *")
        err = new_error()
        try:
            outs = (K if get != "ntk" else ffi.NULL, T if get != "nngp" else ffi.NULL)
            if flip or shift:
                st = lib.nk_kernel_matrix_augment(plan, a1.c, a2.c if a2 else ffi.NULL, o, flip, shift, 0, *outs, err)
            else:
                st = lib.nk_kernel_matrix(plan, a1.c, a2.c if a2 else ffi.NULL, o, *outs, err)
            prog.finish(st, err)
            nngp = to_numpy(K) if get != "ntk" else None
            ntk = to_numpy(T) if get != "nngp" else None
        finally:
            free_array(K)
            free_array(T)
        if get == "both":
            return nngp, ntk
        return nngp if get == "nngp" else ntk


def _augment(augment):
    """(flip, shift) of an augmentation string: None or 'none', 'flip', 'shift:S', 'flip,shift:S'."""
    flip = shift = 0
    for tok in (augment or "none").split(","):
        if tok == "flip":
            flip = 1
        elif tok.startswith("shift:") and tok[6:].isdigit() and 1 <= int(tok[6:]) <= 8:
            shift = int(tok[6:])
        elif tok != "none":
            raise InputError("augment: %r (use None, 'flip', 'shift:S' or 'flip,shift:S' with S in 1..8)"
                             % (augment,), 2)
    return flip, shift


def kernel(spec, x1, x2=None, get="ntk", precision="f64", threads=None, progress=None, augment=None):
    """Exact infinite-width kernel matrices of an architecture.

    spec      architecture spec string (docs/spec.md) or an nkern.Arch
    x1, x2    arrays (N, D), (N, L, C) or (N, H, W, C), samples first; float64 C-ordered arrays
              are used without a copy, others are converted to float64 once.  x2 None: the
              symmetric Gram of x1 (pairs i <= j computed, mirrored).
    get       "ntk", "nngp" or "both" (a tuple (nngp, ntk))
    precision "f64", or "f32" for the leading stack of stride-1 convolutions and activations in
              float32 (~1e-6 relative; sums and later layers in float64)
    threads   None or 0: all cores
    progress  optional callable(done, total) called between units of work; returning True
              cancels (nkern.RunError).  Ctrl-C (KeyboardInterrupt) always stops the call.
    augment   None, or the kernel of the data closed under 'flip' (mirror images), 'shift:S'
              (translations by 0..S pixels with wrap-around) or 'flip,shift:S', as `nkern
              classify --augment` computes it (docs/classify.md); translations need an
              architecture that commutes with them (stride-1 circular convs, or an MLP).
    Returns float64 arrays (N1, N2), equal bit for bit to `nkern kernel`'s output.  Warns
    (RuntimeWarning) where x1's scale puts a tanh, sigmoid, softplus or swish layer past its
    stored series (Arch.mehler_reach below 0.9: raw pixel values), as `nkern kernel` does."""
    arch = spec if isinstance(spec, Arch) else Arch(spec)
    return arch.kernel(x1, x2, get=get, precision=precision, threads=threads, progress=progress, augment=augment,
                       _caller=3)


def num_threads(requested=None):
    """The number of threads a call with threads=requested uses."""
    return lib.nk_num_threads(int(requested or 0))


def simd_isa():
    """The instruction set of the convolutional kernels: "avx512", "avx2" or "portable"."""
    return ffi.string(lib.nk_simd_isa()).decode()
