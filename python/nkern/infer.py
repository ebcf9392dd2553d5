"""Predictions of infinitely wide networks from kernel matrices (include/nk_infer.h)."""
import math

import numpy as np

from ._lib import ffi, lib, call, new_error, check, InArray, InputError, to_numpy, free_array

_COV = {None: 0, "none": 0, "diag": 1, "full": 2}


def _opts(reg, reg_absolute, lr):
    o = ffi.new("nk_infer_opts *")
    lib.nk_infer_opts_default(o)
    o.diag_reg = float(reg)
    o.reg_absolute = bool(reg_absolute)
    o.lr = float(lr)
    return o


def predict(k_train, y_train, k_test, *, ntk_train=None, ntk_test=None, time=None, reg=0.0,
            reg_absolute=False, lr=1.0, cov=None, k_test_test=None):
    """Test predictions from kernels, as `nkern predict`.

    k_train (N, N) NNGP of the training set, k_test (M, N) between test rows and training
    columns, y_train (N) or (N, k) targets.  With ntk_*, k_train and k_test are needed only
    for a covariance and may be None: predict(None, y, None, ntk_train=T, ntk_test=Ts).
    Without ntk_*: the NNGP posterior mean (Cholesky of K + eps I), or with `time` the gradient
    flow driven by K.  With ntk_train (N, N) and ntk_test (M, N): the infinite ensemble trained
    by gradient flow on the MSE for time t (Lee et al. 2019; t = inf by default).
    time: None, a number (float("inf") allowed) or a list of them.
    reg: eps = reg * mean diagonal of the inverted kernel (reg_absolute: eps = reg).
    cov: None, "diag" or "full" (needs k_test_test: (M) or (M, M), the NNGP of the test points).
    Returns the mean, shaped (M, k) -- (M) for 1-D targets -- with a leading time axis when
    `time` is a list; with cov, a tuple (mean, cov)."""
    if cov not in _COV:
        raise InputError("cov: %r (use None, 'diag' or 'full')" % (cov,), 2)
    mode = _COV[cov]
    use_ntk = ntk_train is not None or ntk_test is not None
    if use_ntk and (ntk_train is None or ntk_test is None):
        raise InputError("predict: give both ntk_train and ntk_test", 2)
    if mode and (k_test_test is None or k_train is None or k_test is None):
        raise InputError("predict: cov=%r needs the NNGP kernels k_train, k_test and k_test_test" % cov, 2)
    if not use_ntk and (k_train is None or k_test is None):
        raise InputError("predict: give k_train and k_test (or ntk_train and ntk_test)", 2)
    times_list = time is not None and np.ndim(time) > 0
    times = [float(t) for t in np.atleast_1d(time)] if time is not None else [math.inf]
    y = InArray(y_train, "y_train")
    ktr = InArray(k_train, "k_train") if k_train is not None else None
    kte = InArray(k_test, "k_test") if k_test is not None else None
    ktt = InArray(k_test_test, "k_test_test") if mode else None
    o = _opts(reg, reg_absolute, lr)
    mean, covar = ffi.new("nk_array *"), ffi.new("nk_array *")
    err = new_error()
    try:
        if use_ntk or time is not None:
            ttr = InArray(ntk_train, "ntk_train") if use_ntk else ktr
            tte = InArray(ntk_test, "ntk_test") if use_ntk else kte
            f = ffi.new("nk_flow **")
            call(lib.nk_flow_create, ttr.c, ktr.c if mode else ffi.NULL, y.c, o, f)
            flow = ffi.gc(f[0], lib.nk_flow_free)
            st = lib.nk_flow_predict(flow, tte.c, kte.c if mode else ffi.NULL, ktt.c if mode else ffi.NULL,
                                     ffi.new("double[]", times), len(times), mode, mean,
                                     covar if mode else ffi.NULL, err)
            check(st, err)
            m, c = to_numpy(mean), to_numpy(covar) if mode else None
            if not times_list:
                m = m[0]
                c = c[0] if mode else None
        else:
            g = ffi.new("nk_gp **")
            call(lib.nk_gp_create, ktr.c, y.c, o, g)
            gp = ffi.gc(g[0], lib.nk_gp_free)
            st = lib.nk_gp_predict(gp, kte.c, ktt.c if mode else ffi.NULL, mode, mean,
                                   covar if mode else ffi.NULL, err)
            check(st, err)
            m, c = to_numpy(mean), to_numpy(covar) if mode else None
    finally:
        free_array(mean)
        free_array(covar)
    if y.array.ndim == 1:
        m = m[..., 0]
    return (m, c) if mode else m


def one_hot(labels, nclass=0, on=0.9, off=-0.1):
    """Targets (N, nclass): `on` at each label's column, `off` elsewhere (Lee et al.: 0.9 and
    -0.1, the CLI's choice).  nclass 0: max(label) + 1."""
    lab = InArray(np.asarray(labels).reshape(-1), "labels")
    out = ffi.new("nk_array *")
    try:
        call(lib.nk_one_hot, lab.c, int(nclass), float(on), float(off), out)
        return to_numpy(out)
    finally:
        free_array(out)
