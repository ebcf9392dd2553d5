"""Mean field theory and eigenstructure (include/nk_theory.h)."""
import numpy as np

from ._lib import ffi, lib, call, check, new_error, InArray, InputError
from .kernels import _arch_opts

_PHASE = {-1: "ordered", 0: "critical", 1: "chaotic"}


def _act(name):
    a = ffi.new("nk_act *")
    call(lib.nk_act_parse, name.encode(), a)
    return a


def _mf_params(act, sw2, sb2, quad, q0):
    p = ffi.new("nk_mf_params *")
    p.act = _act(act)[0]
    p.sw2, p.sb2, p.quad_order, p.q0 = float(sw2), float(sb2), int(quad), float(q0)
    return p


def meanfield(act="tanh", sw2=1.0, sb2=0.0, quad=0, q0=0.0):
    """Fixed points, slopes, depth scales and phase of a deep network x -> act(W x + b) with
    Var W = sw2 / fan_in, Var b = sb2 (as `nkern theory meanfield`): a dict with q_star,
    c_star, chi1, chi_c, chi_q, xi_q, xi_c, phase ("ordered", "critical" or "chaotic") and
    q_iters, q_diverges (True: q grows without bound, q_star inf).  act: identity, relu, erf, tanh, gelu, sigmoid, sin, cos, exp, sign,
    rbf(gamma=G), softplus, swish, leaky_relu(A), abrelu(A,B)."""
    r = ffi.new("nk_mf_result *")
    call(lib.nk_mf_solve, _mf_params(act, sw2, sb2, quad, q0), r)
    return {"q_star": r.q_star, "c_star": r.c_star, "chi1": r.chi1, "chi_c": r.chi_c, "chi_q": r.chi_q,
            "xi_q": r.xi_q, "xi_c": r.xi_c, "phase": _PHASE[r.phase], "q_iters": r.q_iters, "q_diverges": bool(r.q_diverges)}


def critical_sw2(act="tanh", sb2=0.0, lo=0.1, hi=10.0, quad=0):
    """The weight variance in [lo, hi] at which chi_1 = 1 for bias variance sb2."""
    out = ffi.new("double *")
    call(lib.nk_mf_critical_sw2, _mf_params(act, 1.0, sb2, quad, 0.0), float(sb2), float(lo), float(hi), out)
    return out[0]


def dual(act, a, b, c, order=0):
    """(E[phi(u) phi(v)], E[phi'(u) phi'(v)]) for (u, v) ~ N(0, [[a, c], [c, b]]): closed forms
    for identity, relu/abrelu, erf, gelu, sin, cos, exp, rbf, sign (kdot 0), Gauss-Hermite quadrature of `order` points per axis
    otherwise (order 0 with such an activation raises InputError)."""
    k, kdot = ffi.new("double *"), ffi.new("double *")
    if lib.nk_act_dual(_act(act), float(a), float(b), float(c), int(order), k, kdot) != 0:
        raise InputError("dual: %s has no closed form, or the covariance [[%g, %g], [%g, %g]] is not valid "
                         "(give a quadrature order, or a positive semidefinite covariance)" % (act, a, c, c, b), 2)
    return k[0], kdot[0]


class Spectrum:
    """Eigenvalues of a symmetric kernel matrix (`nkern spectrum --kernel`).

    eigenvalues  descending;  vectors  the eigenvectors as columns, same order (if requested)
    stats        dict: lmax, lmin, cond, bulk_median, bulk_mean, cond_bulk, eff_rank, trace, lr_max
    alpha, log_c the decay fit lambda_i ~ exp(log_c) i^-alpha over ranks fit[0]..fit[1]"""

    def __repr__(self):
        return "nkern.Spectrum(n=%d, lmax=%.6g, lmin=%.6g, alpha=%s)" % (
            len(self.eigenvalues), self.stats["lmax"], self.stats["lmin"],
            "%.4g" % self.alpha if self.alpha is not None else None)


def spectrum(k, fit=None, vectors=False, sym_tol=1e-8):
    """Eigenvalues (LAPACK dsyevd), statistics and power-law decay of a symmetric kernel
    matrix, as `nkern spectrum --kernel K.npy [--fit I0:I1]`: fit (I0, I1) defaults to ranks
    10..N/2 (1..N below 40 eigenvalues); if the default fit fails, alpha is None."""
    a = InArray(k, "kernel")
    call(lib.nk_check_symmetric, a.c, float(sym_tol), b"kernel")
    n = a.array.shape[0]
    work = np.array(a.array, dtype=np.float64, order="C")  # dsyevd overwrites its input
    eig = np.empty(n)
    call(lib.nk_sym_eig, ffi.cast("double *", ffi.from_buffer(work)), n, int(bool(vectors)),
         ffi.cast("double *", ffi.from_buffer(eig)))
    st = ffi.new("nk_spec_stats *")
    lib.nk_spec_stats_compute(ffi.cast("double *", ffi.from_buffer(eig)), n, st)
    s = Spectrum()
    s.eigenvalues = eig[::-1].copy()
    s.vectors = work[:, ::-1].copy() if vectors else None
    s.stats = {f: getattr(st, f) for f in ("lmax", "lmin", "cond", "bulk_median", "bulk_mean", "cond_bulk",
                                           "eff_rank", "trace", "lr_max")}
    s.alpha = s.log_c = None
    given = fit is not None
    if not given:
        fit = (10, n // 2) if n >= 40 else (1, n)
    alpha, log_c, err = ffi.new("double *"), ffi.new("double *"), new_error()
    st = lib.nk_decay_fit(ffi.cast("double *", ffi.from_buffer(s.eigenvalues)), n, int(fit[0]), int(fit[1]),
                          alpha, log_c, err)
    if given:
        check(st, err)
    if st == 0:
        s.alpha, s.log_c = alpha[0], log_c[0]
    return s


def sphere_spectrum(spec, dim, kmax=40, get="ntk", nquad=0, **arch_opts):
    """Exact eigenvalues mu_0..mu_kmax of an MLP spec's kernel on the sphere S^{dim-1}
    (`nkern spectrum --sphere`): k(t) = sum_k mu_k N(dim, k) P_k(t).  Returns (mu,
    multiplicity) arrays of kmax + 1 values."""
    if get not in ("ntk", "nngp"):
        raise InputError("get: %r (use 'ntk' or 'nngp')" % (get,), 2)
    mu = np.empty(kmax + 1)
    call(lib.nk_sphere_eigen, spec.encode(), _arch_opts(**arch_opts), 2 if get == "ntk" else 1, int(dim),
         int(kmax), int(nquad), ffi.cast("double *", ffi.from_buffer(mu)), ffi.NULL)
    mult = np.array([lib.nk_sphere_multiplicity(int(dim), k) for k in range(kmax + 1)])
    return mu, mult


def patch_spectrum(spec, patches, dim, kmax=4, get="ntk", nquad=0, **arch_opts):
    """Eigenvalues lambda_k on a product of `patches` spheres S^{dim-1}
    (`nkern spectrum --patches`), as an array of shape (kmax + 1,) * patches indexed by the
    degree vector k."""
    if get not in ("ntk", "nngp"):
        raise InputError("get: %r (use 'ntk' or 'nngp')" % (get,), 2)
    lam = np.empty((kmax + 1) ** patches)
    call(lib.nk_product_sphere_eigen, spec.encode(), _arch_opts(**arch_opts), 2 if get == "ntk" else 1,
         int(patches), int(dim), int(kmax), int(nquad), ffi.cast("double *", ffi.from_buffer(lam)))
    return lam.reshape((kmax + 1,) * patches)
