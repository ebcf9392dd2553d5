"""The C library through cffi's ABI mode: declarations, loading, errors, arrays.

Everything here is private; the public functions live in the package's other modules.
"""
import os

import numpy as np
from cffi import FFI

# The declarations of include/nkern.h, nk_data.h, nk_infer.h and nk_theory.h that the package
# calls, as cffi reads them (no macros).  Struct layouts must match the headers exactly.
CDEF = """
typedef enum { NK_OK = 0, NK_ERR_INPUT = 2, NK_ERR_NOMEM = 3, NK_ERR_IO = 4, NK_ERR_RUN = 5, NK_ERR_NONFINITE = 6 } nk_status;
typedef struct { char msg[1024]; } nk_error;
typedef struct { double *data; int ndim; size_t shape[4]; } nk_array;
void nk_array_free(nk_array *a);

typedef enum { NK_PARAM_NTK = 0, NK_PARAM_STANDARD = 1 } nk_param;
typedef struct { double w_std; double b_std; nk_param param; double width; int quad_order; } nk_arch_opts;
void nk_arch_opts_default(nk_arch_opts *o);
typedef struct nk_arch nk_arch;
nk_status nk_arch_parse(const char *spec, const nk_arch_opts *opts, nk_arch **out, nk_error *err);
void nk_arch_free(nk_arch *a);
typedef struct nk_plan nk_plan;
nk_status nk_plan_create(const nk_arch *arch, int in_ndim, const size_t *in_shape, nk_plan **out, nk_error *err);
void nk_plan_free(nk_plan *p);
nk_status nk_plan_describe(const nk_plan *p, size_t n1, size_t n2, int nthreads, char *buf, size_t buflen);
nk_status nk_plan_describe_prec(const nk_plan *p, size_t n1, size_t n2, int nthreads, int f32, char *buf, size_t buflen);
typedef struct { double bytes; double flops; double pair_flops; } nk_cost;
nk_status nk_plan_cost(const nk_plan *p, size_t n1, size_t n2, int nthreads, nk_cost *c);
nk_status nk_plan_cost_prec(const nk_plan *p, size_t n1, size_t n2, int nthreads, int f32, nk_cost *c);
double nk_plan_seconds(const nk_plan *p, size_t n1, size_t n2, int nthreads, double input_ms, int f32, int shift);
double nk_plan_mehler_reach(const nk_plan *p, double input_ms, int *op);

typedef int (*nk_progress_fn)(void *ctx, size_t done, size_t total);
typedef struct {
    int nthreads; int get; double mem_limit; nk_progress_fn progress; void *progress_ctx; int f32;
    size_t first1, first2; int shift;
} nk_kernel_opts;
void nk_kernel_opts_default(nk_kernel_opts *o);
nk_status nk_kernel_matrix(const nk_plan *p, const nk_array *x1, const nk_array *x2,
                           const nk_kernel_opts *o, nk_array *nngp, nk_array *ntk, nk_error *err);
nk_status nk_kernel_matrix_augment(const nk_plan *p, const nk_array *x1, const nk_array *x2,
                                   const nk_kernel_opts *o, int flip, int shift, int full_sum,
                                   nk_array *nngp, nk_array *ntk, nk_error *err);
int nk_num_threads(int requested);
const char *nk_simd_isa(void);

typedef enum { NK_ACT_IDENTITY, NK_ACT_RELU, NK_ACT_ABRELU, NK_ACT_ERF, NK_ACT_TANH, NK_ACT_GELU,
               NK_ACT_SIGMOID, NK_ACT_SIN, NK_ACT_SOFTPLUS, NK_ACT_SWISH,
               NK_ACT_COS, NK_ACT_EXP, NK_ACT_RBF, NK_ACT_SIGN } nk_act_kind;
typedef struct { nk_act_kind kind; double a, b; } nk_act;
nk_status nk_act_dual(const nk_act *act, double a, double b, double c, int order, double *k, double *kdot);

nk_status nk_npy_read(const char *path, nk_array *out, nk_error *err);
nk_status nk_npy_write(const char *path, const nk_array *a, int as_f32, nk_error *err);
nk_status nk_idx_read(const char *path, nk_array *out, nk_error *err);

/* nk_data.h */
typedef struct { nk_array x; nk_array y; } nk_dataset;
void nk_dataset_free(nk_dataset *d);
typedef enum { NK_SPLIT_TRAIN = 0, NK_SPLIT_TEST = 1 } nk_split;
nk_status nk_fashion_mnist_load(const char *dir, nk_split split, nk_dataset *out, nk_error *err);
nk_status nk_cifar10_load(const char *dir, nk_split split, size_t n_max, nk_dataset *out, nk_error *err);
nk_status nk_subset_indices(const nk_array *labels, size_t n, int balanced, uint64_t seed, size_t *idx, nk_error *err);
nk_status nk_prep_unit_range(nk_array *x, double lo, double hi, nk_error *err);
typedef enum { NK_STD_UNIT_NORM = 0, NK_STD_UNIT_VAR = 1 } nk_std_kind;
nk_status nk_prep_standardize(nk_array *x, nk_std_kind kind, nk_error *err);
typedef struct nk_zca nk_zca;
nk_status nk_zca_fit(const nk_array *x_train, double eps, nk_zca **out, nk_error *err);
nk_status nk_zca_apply(const nk_zca *z, nk_array *x, nk_error *err);
void nk_zca_free(nk_zca *z);

/* nk_infer.h */
typedef struct { double diag_reg; int reg_absolute; double lr; double sym_tol; double psd_tol; } nk_infer_opts;
void nk_infer_opts_default(nk_infer_opts *o);
typedef enum { NK_COV_NONE = 0, NK_COV_DIAG = 1, NK_COV_FULL = 2 } nk_cov_mode;
typedef struct nk_gp nk_gp;
nk_status nk_gp_create(const nk_array *k_train, const nk_array *y_train, const nk_infer_opts *o, nk_gp **out, nk_error *err);
void nk_gp_free(nk_gp *gp);
nk_status nk_gp_predict(const nk_gp *gp, const nk_array *k_test_train, const nk_array *k_test_test,
                        nk_cov_mode cov_mode, nk_array *mean, nk_array *cov, nk_error *err);
double nk_gp_reg(const nk_gp *gp);
typedef struct nk_flow nk_flow;
nk_status nk_flow_create(const nk_array *ntk_train, const nk_array *nngp_train, const nk_array *y_train,
                         const nk_infer_opts *o, nk_flow **out, nk_error *err);
void nk_flow_free(nk_flow *f);
nk_status nk_flow_predict(const nk_flow *f, const nk_array *ntk_test_train, const nk_array *nngp_test_train,
                          const nk_array *nngp_test_test, const double *times, size_t ntimes,
                          nk_cov_mode cov_mode, nk_array *mean, nk_array *cov, nk_error *err);
double nk_flow_reg(const nk_flow *f);
nk_status nk_one_hot(const nk_array *labels, size_t nclass, double on, double off, nk_array *out, nk_error *err);

/* nk_theory.h */
nk_status nk_act_parse(const char *name, nk_act *out, nk_error *err);
typedef struct { nk_act act; double sw2, sb2; int quad_order; double q0; } nk_mf_params;
typedef enum { NK_PHASE_ORDERED = -1, NK_PHASE_CRITICAL = 0, NK_PHASE_CHAOTIC = 1 } nk_phase;
typedef struct {
    double q_star; double c_star; double chi1, chi_c, chi_q; double xi_q, xi_c; nk_phase phase; int q_iters;
    int q_diverges;
} nk_mf_result;
nk_status nk_mf_solve(const nk_mf_params *p, nk_mf_result *r, nk_error *err);
nk_status nk_mf_critical_sw2(const nk_mf_params *p, double sb2, double lo, double hi, double *sw2, nk_error *err);
nk_status nk_sym_eig(double *a, size_t n, int vectors, double *eig, nk_error *err);
nk_status nk_check_symmetric(const nk_array *a, double tol, const char *name, nk_error *err);
typedef struct {
    double lmax, lmin, cond; double bulk_median; double bulk_mean; double cond_bulk; double eff_rank;
    double trace; double lr_max;
} nk_spec_stats;
void nk_spec_stats_compute(const double *eig, size_t n, nk_spec_stats *s);
nk_status nk_decay_fit(const double *desc, size_t n, size_t i0, size_t i1, double *alpha, double *log_c, nk_error *err);
double nk_sphere_multiplicity(int d, int k);
nk_status nk_sphere_eigen(const char *spec, const nk_arch_opts *ao, int get, int d, int kmax,
                          size_t nquad, double *mu, double *k1, nk_error *err);
nk_status nk_product_sphere_eigen(const char *spec, const nk_arch_opts *ao, int get, int m,
                                  int n0, int kmax, size_t nquad, double *lambda, nk_error *err);
"""

ffi = FFI()
ffi.cdef(CDEF)
ffi.cdef("void free(void *p);")  # the C library's free, for arrays the library allocated

GET = {"nngp": 1, "ntk": 2, "both": 3}

_HERE = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    """Where the library may be, in the order tried (see load_library)."""
    env = os.environ.get("NKERN_LIB")
    if env:
        return [env]
    # an installed prefix: this package under PREFIX/lib/pythonX.Y/site-packages/nkern
    prefix = os.path.abspath(os.path.join(_HERE, "..", "..", "..", ".."))
    return [os.path.join(_HERE, "libnkern.so"),                          # pip's copy
            os.path.abspath(os.path.join(_HERE, "..", "..", "build", "libnkern.so")),  # source tree
            os.path.join(prefix, "lib", "libnkern.so.0"),
            "/usr/local/lib/libnkern.so.0",
            "libnkern.so.0"]                                             # the dynamic linker's path


def load_library():
    """(ffi library, path) of the libnkern.so this package uses: $NKERN_LIB if set (an error if
    it does not load), else the package's own copy, the source tree's build/, the installed
    prefix, then the dynamic linker's search path."""
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            # never unloaded: cffi would dlclose it when the interpreter exits, unmapping it (and
            # libgomp, whose only user it may be) while OpenMP's idle threads still spin in it:
            # a segfault at exit after any parallel call (certain with OMP_WAIT_POLICY=active)
            return ffi.dlopen(path, ffi.RTLD_NOW | ffi.RTLD_NODELETE), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise OSError("nkern: cannot load libnkern.so: tried %s (build it with `make`, install it with "
                  "`make install`, or set NKERN_LIB to its path)" % "; ".join(tried))


lib, LIBRARY_PATH = load_library()
libc = ffi.dlopen(None)


# ------------------------------------------------------------------ errors --

class Error(Exception):
    """A failure reported by libnkern.  `status` is the library's nk_status and str(e) its
    message "WHERE: WHAT (HOW TO FIX)".  Subclasses also derive from the matching built-in
    exception, so `except ValueError` catches bad input."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class InputError(Error, ValueError):
    """NK_ERR_INPUT: bad usage, spec, data or shapes (the caller can fix it)."""


class MemoryLimitError(Error, MemoryError):
    """NK_ERR_NOMEM: an allocation failed or the estimate exceeds the memory limit."""


class FileError(Error, OSError):
    """NK_ERR_IO: a file could not be read or written."""


class RunError(Error, RuntimeError):
    """NK_ERR_RUN: a numerical failure during the run."""


class NonFiniteError(RunError, ArithmeticError):
    """NK_ERR_NONFINITE: a result overflowed to Inf or NaN; the message names the layer and pair."""


_BY_STATUS = {2: InputError, 3: MemoryLimitError, 4: FileError, 5: RunError, 6: NonFiniteError}


def new_error():
    return ffi.new("nk_error *")


def check(status, err):
    """Raise the exception for a failed status with the library's message."""
    if status != 0:
        msg = ffi.string(err.msg).decode("utf-8", "replace") or "unknown failure"
        raise _BY_STATUS.get(status, Error)(msg, status)


def call(fn, *args):
    """Call a library function whose last argument is an nk_error *, raising on failure."""
    err = new_error()
    check(fn(*args, err), err)


# ------------------------------------------------------------------ arrays --

class InArray:
    """A read-only view of a numpy array as an nk_array: float64 C-contiguous arrays are passed
    without a copy; anything else is converted once (float32 to float64 is exact)."""

    def __init__(self, a, name="array", writable=False):
        a = np.asarray(a)
        if a.dtype != np.float64 or not a.flags.c_contiguous or (writable and not a.flags.writeable):
            a = np.ascontiguousarray(a, dtype=np.float64)
        if not 1 <= a.ndim <= 4:
            raise InputError("%s: %d axes (use 1 to 4)" % (name, a.ndim), 2)
        self.array = a  # keeps the memory alive as long as the struct is used
        self.c = ffi.new("nk_array *")
        self.c.data = ffi.cast("double *", ffi.from_buffer(a, require_writable=writable)) if a.size else ffi.NULL
        self.c.ndim = a.ndim
        for i, n in enumerate(a.shape):
            self.c.shape[i] = n
        if not a.size:
            # the library refuses empty arrays with its own message; give it a valid pointer
            self._dummy = ffi.new("double[1]")
            self.c.data = self._dummy


def to_numpy(arr):
    """Take ownership of an nk_array the library allocated and return it as a numpy array
    without copying: the memory is freed when the array is garbage-collected."""
    shape = tuple(arr.shape[i] for i in range(arr.ndim))
    n = int(np.prod(shape)) if shape else 0
    if arr.data == ffi.NULL:
        return np.zeros(shape)
    owner = ffi.gc(arr.data, libc.free)
    arr.data = ffi.NULL  # ownership moved
    if n == 0:
        return np.zeros(shape)
    return np.frombuffer(ffi.buffer(owner, n * 8), dtype=np.float64).reshape(shape)


def free_array(arr):
    if arr.data != ffi.NULL:
        lib.nk_array_free(arr)


# ----------------------------------------------- progress and interruption --

class Progress:
    """The progress callback of a long call: reports (done, total) to a user callable and
    cancels the computation on KeyboardInterrupt (Ctrl-C) or when the callable returns True.

    The library calls it from the calling thread between units of work; while the C call runs,
    Python's SIGINT handler only sets a flag, and the next Python bytecode this callback
    executes raises KeyboardInterrupt.  cffi passes that exception to `_onerror`, which records
    it and returns 1: the library stops its threads and fails with NK_ERR_RUN, and `finish`
    raises the KeyboardInterrupt in the caller with everything freed."""

    def __init__(self, report=None):
        self.report = report
        self.interrupt = None
        self.c = ffi.callback("int(void *, size_t, size_t)", self._step, onerror=self._onerror)

    def _step(self, ctx, done, total):
        if self.report is not None and self.report(done, total):
            return 1
        return 0

    def _onerror(self, exc_type, exc_value, tb):
        self.interrupt = exc_value if exc_value is not None else exc_type()
        return 1

    def finish(self, status, err):
        if self.interrupt is not None:
            raise self.interrupt
        check(status, err)



for _cls in (Error, InputError, MemoryLimitError, FileError, RunError, NonFiniteError):
    _cls.__module__ = "nkern"  # shown as nkern.InputError in tracebacks
