#!/usr/bin/python3
"""test_ref_selfcheck.py -- checks of the numpy reference tests/ref/nt_ref.py against things
that do not share its code:
  * closed forms written out by hand for one hidden layer: the arc-cosine kernel (Cho & Saul
    2009) for `dense relu dense` and the arcsine kernel (Williams 1997) for `dense erf dense`,
    NNGP and NTK;
  * its quadrature against a second rule (composite Gauss-Legendre) and against closed forms
    (erf, sin), and ABReLU against identities and a plain Monte Carlo average;
  * Monte Carlo NNGPs of small CNNs: random finite-width networks sampled in numpy with an
    explicit forward pass (zero/wrap padding with np.pad, im2col patches, strides, pooling);
  * Monte Carlo empirical NTKs (hand-written backprop) of a finite MLP in the ntk and in the
    standard parameterization;
  * bookkeeping: symmetry, and the x1/x2 form equal to the block of the symmetric form.
Last line: "test_ref_selfcheck: N passed, N failed"; exit status 1 on any failure."""
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ref'))
import nt_ref as R  # noqa: E402
from nt_ref import act, avgpool, conv, dense, flatten, gap, res  # noqa: E402

passed = failed = 0


def check(name, ok, detail=''):
    global passed, failed
    if ok:
        passed += 1
        print('ok   %s %s' % (name, detail))
    else:
        failed += 1
        print('FAIL %s %s' % (name, detail))


def scaled_err(A, ref, absolute):
    """|A - ref| per entry: relative to the entry, except where `absolute` is set: there
    relative to the matrix's scale sqrt(ref_ii ref_jj) (entries that can be exactly 0)."""
    d = np.abs(np.diag(ref))
    scale = np.sqrt(np.outer(d, d))
    den = np.where(absolute, scale, np.abs(ref))
    return np.abs(A - ref) / np.maximum(den, 1e-300)


def relerr(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)))


# ---------------------------------------------------------------------------------------------
# 1. One hidden layer, closed forms written out by hand (scalar math, one pair at a time).

def arccos_kernel(n, x, y):
    """Cho & Saul: k_n(x, y) = 2 E_w[step(w.x) step(w.y) (w.x)^n (w.y)^n], w ~ N(0, I)
    = (1/pi) |x|^n |y|^n J_n(theta)."""
    nx, ny = math.sqrt(x @ x), math.sqrt(y @ y)
    # angle by Kahan's formula 2 atan2(|x^ - y^|, |x^ + y^|): accurate also near 0 and pi
    xh, yh = x / nx, y / ny
    th = 2 * math.atan2(math.sqrt((xh - yh) @ (xh - yh)), math.sqrt((xh + yh) @ (xh + yh)))
    J = {0: math.pi - th, 1: math.sin(th) + (math.pi - th) * math.cos(th)}[n]
    return (nx * ny) ** n * J / math.pi


def one_hidden_relu(x, y, w, b):
    """f = (w/sqrt(n)) v.relu((w/sqrt(D)) W x + b beta) + b beta', n -> inf, NTK param.
    Pre-activations are w.x~ with x~ = (w x / sqrt(D), b) and w ~ N(0, I): an arc-cosine
    kernel on the augmented inputs."""
    D = len(x)
    xa = np.append(w * x / math.sqrt(D), b)
    ya = np.append(w * y / math.sqrt(D), b)
    k1 = xa @ ya                                  # first-layer NNGP
    nngp = w * w * arccos_kernel(1, xa, ya) / 2 + b * b
    theta1 = k1                                   # first-layer NTK (NTK of the input is 0)
    ntk = nngp + w * w * theta1 * arccos_kernel(0, xa, ya) / 2
    return nngp, ntk


def one_hidden_erf(x, y, w, b):
    """Williams: E[erf(u) erf(v)] = (2/pi) asin(2 x~.S y~ / sqrt((1 + 2 x~.S x~)(1 + 2 y~.S y~)))
    for u = w.x~, v = w.y~, w ~ N(0, S); here S = I on augmented inputs.  For the NTK:
    erf'(t) = (2/sqrt(pi)) exp(-t^2) and E[exp(-u^2 - v^2)] = det(I + 2 Sigma)^(-1/2)."""
    D = len(x)
    xa = np.append(w * x / math.sqrt(D), b)
    ya = np.append(w * y / math.sqrt(D), b)
    sxx, syy, sxy = xa @ xa, ya @ ya, xa @ ya
    nngp = w * w * (2 / math.pi) * math.asin(2 * sxy / math.sqrt((1 + 2 * sxx) * (1 + 2 * syy))) \
        + b * b
    Sigma = np.array([[sxx, sxy], [sxy, syy]])
    edd = (4 / math.pi) / math.sqrt(np.linalg.det(np.eye(2) + 2 * Sigma))
    ntk = nngp + w * w * sxy * edd
    return nngp, ntk


def check_closed_forms():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((4, 7))
    X[1] = -0.7 * X[0]   # negative correlation
    X[2] = 1.9 * X[0]    # parallel inputs, theta = 0
    for w, b in ((1.0, 0.0), (1.3, 0.2), (0.8, 0.5)):
        for fn, cf in (('relu', one_hidden_relu), ('erf', one_hidden_erf)):
            ir = [dense(), act(fn), dense()]
            K, T = R.kernels(ir, X, w=w, b=b)
            Kc = np.array([[cf(x, y, w, b)[0] for y in X] for x in X])
            Tc = np.array([[cf(x, y, w, b)[1] for y in X] for x in X])
            # Entries of collinear inputs ((x0, x2) parallel, (x0, x1) and (x1, x2) antiparallel)
            # involve arccos at rho = +-1, where a rounding of 1e-16 in rho (which depends on
            # the BLAS kernel's order of summation) moves theta by ~1.5e-8; at rho = -1 the
            # ReLU NNGP and NTK are 0 in exact arithmetic, so no relative error is meaningful.
            # Those entries are compared absolutely, against the matrix's Cauchy-Schwarz scale
            # sqrt(K_ii K_jj), at 1e-7; every other entry relatively at 1e-13.
            nrm = np.sqrt(np.einsum('ij,ij->i', X, X))
            collinear = np.abs(X @ X.T / np.outer(nrm, nrm)) > 1 - 1e-12
            np.fill_diagonal(collinear, False)
            eK = scaled_err(K, Kc, collinear)
            eT = scaled_err(T, Tc, collinear)
            tol = np.where(collinear, 1e-7, 1e-13) if fn == 'relu' else np.full(K.shape, 1e-13)
            check('closed-form dense %s dense w=%g b=%g' % (fn, w, b),
                  (eK < tol).all() and (eT < tol).all(),
                  'nngp %.1e ntk %.1e (ntk off the collinear pairs %.1e)'
                  % (eK.max(), eT.max(), np.where(tol < 1e-10, eT, 0).max()))


# ---------------------------------------------------------------------------------------------
# 2. Elementwise expectations.

def check_duals():
    rng = np.random.default_rng(3)
    n = 8
    a = rng.uniform(0.05, 4.0, n)
    b = rng.uniform(0.05, 4.0, n)
    r = rng.uniform(-1, 1, n)
    r[0], r[1] = 1.0, -1.0
    c = r * np.sqrt(a * b)
    # quadrature (Gauss-Hermite, the one the reference uses) against composite Gauss-Legendre
    for fn in R.QUADRATURE:
        k1, d1 = R.quad_dual(fn, a, b, c)
        k2, d2 = R.quad_dual_gl(fn, a, b, c, h=0.5)
        e = max(np.abs(k1 - k2).max(), np.abs(d1 - d2).max())
        check('quadrature GH vs GL %s' % fn, e < 1e-9, 'max abs diff %.1e' % e)
    # above GH_MAX_VAR the reference switches to composite Gauss-Legendre with panels
    # min(0.25, 1/sqrt(var)): check that rule against itself with narrower panels
    ab = rng.uniform(R.GH_MAX_VAR, 12.0, (2, 3))
    rb = np.array([1.0, -0.3, 0.9])
    cb = rb * np.sqrt(ab[0] * ab[1])
    for fn in R.QUADRATURE:
        k1, d1 = R.quad_dual(fn, ab[0], ab[1], cb)
        k2, d2 = R.quad_dual_gl(fn, ab[0], ab[1], cb, h=0.6 / math.sqrt(12.0))
        e = max(np.abs(k1 - k2).max(), np.abs(d1 - d2).max())
        check('large-variance quadrature vs finer GL %s' % fn, e < 1e-10, 'max abs diff %.1e' % e)
    # quadrature against the closed forms of erf and sin
    for fn, cf in (('erf', R._erf_dual), ('sin', R._sin_dual)):
        k1, d1 = R.quad_dual_gl(fn, a, b, c, h=0.5)
        k2, d2 = cf(a, b, c)
        e = max(np.abs(k1 - k2).max(), np.abs(d1 - d2).max())
        check('closed form vs GL quadrature %s' % fn, e < 1e-10, 'max abs diff %.1e' % e)
    # cos, exp, rbf: closed forms against GL quadrature, relative to the Cauchy-Schwarz scale
    for fn, gamma, cf in (('cos', 1.0, R._cos_dual), ('exp', 1.0, R._exp_dual),
                          ('rbf', 1.0, lambda a, b, c: R._rbf_dual(1.0, a, b, c)),
                          ('rbf', 0.4, lambda a, b, c: R._rbf_dual(0.4, a, b, c))):
        # (exp: the integrand phi(z) e^{sqrt(a) z} peaks at z = sqrt(a), so the rule reaches 14)
        k1, d1 = R.quad_dual_gl(fn, a, b, c, gamma=gamma, h=0.25, L=14.0 if fn == 'exp' else 9.0)
        k2, d2 = cf(a, b, c)
        ka, da = cf(a, a, a)
        kb, db = cf(b, b, b)
        e = max((np.abs(k1 - k2) / np.sqrt(np.abs(ka * kb))).max(),
                (np.abs(d1 - d2) / np.sqrt(np.abs(da * db))).max())
        check('closed form vs GL quadrature %s' % (fn if fn != 'rbf' else 'rbf(gamma=%g)' % gamma), e < 1e-10,
              'max diff / scale %.1e' % e)
    # sign: E[sign u sign v] against a plain Monte Carlo average (the jump defeats quadrature)
    z = rng.standard_normal((2, 1_000_000))
    worst = 0.0
    for ai, bi, ri in zip(a, b, r):
        u = math.sqrt(ai) * z[0]
        v = math.sqrt(bi) * (ri * z[0] + math.sqrt(max(1 - ri * ri, 0.0)) * z[1])
        k, d = R._sign_dual(np.array(ai), np.array(bi), np.array(ri * math.sqrt(ai * bi)))
        worst = max(worst, abs(np.mean(np.sign(u) * np.sign(v)) - float(k)) / 1e-3, abs(float(d)))
    check('sign closed form vs Monte Carlo (1e6 draws)', worst < 5, 'max |mc - ref| / 1e-3 = %.2f' % worst)
    # relu closed form against GL quadrature where the kink is harmless (checks E[phi phi])
    k1, _ = R.quad_dual_gl('relu', a, b, c, h=0.25, m=16)
    k2, _ = R._relu_dual(a, b, c)
    check('relu closed form vs GL quadrature', np.abs(k1 - k2).max() < 1e-4,
          'max abs diff %.1e' % np.abs(k1 - k2).max())
    # ABReLU identities
    k, d = R._abrelu_dual(1.7, 1.7, a, b, c)
    check('abrelu(s,s) = s*identity', np.allclose(k, 1.7 ** 2 * c, rtol=1e-14, atol=0)
          and np.allclose(d, 1.7 ** 2, rtol=1e-14, atol=0))
    k, d = R._abrelu_dual(0.0, 1.0, a, b, c)
    kr, dr = R._relu_dual(a, b, c)
    check('abrelu(0,1) = relu', np.allclose(k, kr, rtol=1e-14) and np.allclose(d, dr, rtol=1e-14))
    # ABReLU against a plain Monte Carlo average
    lo, hi = -0.4, 1.3
    z = rng.standard_normal((2, 1_000_000))
    ok = True
    worst = 0.0
    for i in range(4):
        u = math.sqrt(a[i]) * z[0]
        v = math.sqrt(b[i]) * (r[i] * z[0] + math.sqrt(1 - r[i] ** 2) * z[1])
        pu, pv = np.where(u < 0, lo * u, hi * u), np.where(v < 0, lo * v, hi * v)
        du, dv = np.where(u < 0, lo, hi), np.where(v < 0, lo, hi)
        k, d = R._abrelu_dual(lo, hi, a[i], b[i], c[i])
        for est, ref in ((pu * pv, k), (du * dv, d)):
            se = est.std() / math.sqrt(est.size)
            # (for rho = -1, phi'(u)phi'(v) = lo*hi always: SE 0, hence the 1e-12 floor)
            worst = max(worst, abs(est.mean() - ref) / (se + 1e-12))
            ok &= abs(est.mean() - ref) < 4.5 * se + 1e-12
    check('abrelu(-0.4,1.3) vs Monte Carlo', ok, 'worst %.1f SE' % worst)


# ---------------------------------------------------------------------------------------------
# 3. Monte Carlo NNGP of small CNNs, sampled finite networks with an explicit forward pass.

def _pad_axis(h, axis, f, s, pad):
    n = h.shape[axis]
    if pad == 'valid':
        return h, (n - f) // s + 1
    out = -(-n // s)
    total = max((out - 1) * s + f - n, 0)
    widths = [(0, 0)] * h.ndim
    widths[axis] = (total // 2, total - total // 2)
    return np.pad(h, widths, mode='wrap' if pad == 'circular' else 'constant'), out


def patches(h, f, s, pad):
    """h: (N, *spatial, C) -> (N, *out_spatial, prod(f) * C): for each output position the
    window of the (padded) input, read with a stride."""
    d = h.ndim - 2
    outs = []
    for ax in range(d):
        h, o = _pad_axis(h, 1 + ax, f[ax], s[ax], pad)
        outs.append(o)
    cols = []
    for off in np.ndindex(*f):
        sl = [slice(None)] + [slice(off[ax], off[ax] + s[ax] * (outs[ax] - 1) + 1, s[ax])
                              for ax in range(d)] + [slice(None)]
        cols.append(h[tuple(sl)])
    return np.concatenate(cols, axis=-1)


def sample_gaussian_layer(F, w, b, n, fan_in, rng):
    """Pre-activations z = (w/sqrt(fan_in)) F W + b beta of n channels, W, beta ~ N(0, 1),
    where F: (M, fan_in) holds one input row per (sample, position).  The n channels are
    independent and each is N(0, G) with G = w^2 F F^T / fan_in + b^2, so they are drawn
    through an eigendecomposition of G: the same distribution as drawing W and beta."""
    G = w * w * (F @ F.T) / fan_in + b * b
    lam, V = np.linalg.eigh(G)
    L = V * np.sqrt(np.clip(lam, 0, None))
    return L @ rng.standard_normal((G.shape[0], n))


def mc_forward(layers, X, n, rng):
    """One random network of width n; returns the readout NNGP conditional on all hidden
    layers (the last dense layer integrated exactly: w^2 h.h'/C + b^2)."""
    h = np.asarray(X, float)
    N = h.shape[0]
    for i, L in enumerate(layers):
        op = L['op']
        last = i == len(layers) - 1
        if op in ('conv', 'dense'):
            w, b = L.get('w', 1.0), L.get('b', 0.0)
            d = h.ndim - 2
            if op == 'conv':
                f = (L['f'],) * d
                s = (L.get('stride', 1),) * d
                P = patches(h, f, s, L.get('pad', 'same'))
            else:
                P = h
            sp = P.shape[1:-1]
            F = P.reshape(-1, P.shape[-1])
            if last:
                assert op == 'dense' and h.ndim == 2
                return w * w * (F @ F.T) / F.shape[1] + b * b
            z = sample_gaussian_layer(F, w, b, n, F.shape[1], rng)
            h = z.reshape((N,) + sp + (n,))
        elif op == 'act':
            h = R.act_fn(L['fn'], L.get('gamma', 1.0))[0](h)
        elif op == 'flatten':
            h = h.reshape(N, -1)
        elif op == 'gap':
            h = h.reshape(N, -1, h.shape[-1]).mean(axis=1)
        elif op == 'avgpool':
            d = h.ndim - 2
            k = L['k']
            P = patches(h, (k,) * d, (L.get('stride', k),) * d, L.get('pad', 'valid'))
            h = P.reshape(P.shape[:-1] + (k ** d, h.shape[-1])).mean(axis=-2)
        else:
            raise ValueError(op)
    raise ValueError('no readout')


def check_mc_cnn():
    rng = np.random.default_rng(5)
    cases = [
        ('conv(3) relu conv(3) relu flatten dense on 5x5x2',
         [conv(3), act('relu'), conv(3), act('relu'), flatten(), dense()], (5, 5, 2), 2000),
        ('conv(3,w=1.3,b=0.2) relu conv(3,stride=2) erf gap dense(b=0.1) on 6x6x3',
         [conv(3, w=1.3, b=0.2), act('relu'), conv(3, stride=2), act('erf'), gap(),
          dense(b=0.1)], (6, 6, 3), 1500),
        ('1-D conv(4,pad=circular) relu conv(2,pad=valid,stride=2) relu avgpool(2) gap dense'
         ' on 9x2',
         [conv(4, pad='circular'), act('relu'), conv(2, pad='valid', stride=2), act('relu'),
          avgpool(2), gap(), dense()], (9, 2), 2000),
        ('conv(3,w=1.2) sign conv(3,b=0.1) rbf(gamma=0.5) conv(2) cos gap dense on 5x4x2',
         [conv(3, w=1.2), act('sign'), conv(3, b=0.1), act('rbf', gamma=0.5), conv(2),
          act('cos'), gap(), dense()], (5, 4, 2), 800),
        ('dense(w=0.6) exp dense on 6', [dense(w=0.6), act('exp'), dense()], (6,), 2000),
    ]
    width = 256
    for name, ir, shape, draws in cases:
        X = rng.standard_normal((3,) + shape)
        ref, _ = R.kernels(ir, X)
        est = np.array([mc_forward(ir, X, width, rng) for _ in range(draws)])
        m, se = est.mean(0), est.std(0) / math.sqrt(draws)
        # finite width 256 biases the NNGP by O(1/width); allow 0.5% on top of 4.5 SE
        dev = np.abs(m - ref) / (4.5 * se + 5e-3 * np.abs(ref))
        check('Monte Carlo NNGP %s' % name, dev.max() < 1,
              'max |mc-ref|/(4.5 SE + 0.5%%) = %.2f; max rel dev %.2e; ref diag %s'
              % (dev.max(), relerr(m, ref), np.round(np.diag(ref), 4)))


def check_mc_res():
    """x -> conv(3) -> h; y = h + conv(3)(relu(h)); relu; flatten; dense.  The residual sum
    is formed on the sampled features, then compared with the reference's res()."""
    rng = np.random.default_rng(8)
    X = rng.standard_normal((3, 4, 4, 2))
    ir = [conv(3), res(act('relu'), conv(3, b=0.1)), act('relu'), flatten(), dense()]
    ref, _ = R.kernels(ir, X)
    width, draws = 256, 2000
    est = []
    for _ in range(draws):
        P = patches(X, (3, 3), (1, 1), 'same')
        F = P.reshape(-1, P.shape[-1])
        h = sample_gaussian_layer(F, 1.0, 0.0, width, F.shape[1], rng).reshape(3, 4, 4, width)
        P = patches(np.maximum(h, 0), (3, 3), (1, 1), 'same')
        F = P.reshape(-1, P.shape[-1])
        g = sample_gaussian_layer(F, 1.0, 0.1, width, F.shape[1], rng).reshape(3, 4, 4, width)
        y = np.maximum(h + g, 0).reshape(3, -1)
        est.append(y @ y.T / y.shape[1])
    est = np.array(est)
    m, se = est.mean(0), est.std(0) / math.sqrt(draws)
    dev = np.abs(m - ref) / (4.5 * se + 5e-3 * np.abs(ref))
    check('Monte Carlo NNGP conv(3) res(relu conv(3,b=0.1)) relu flatten dense on 4x4x2',
          dev.max() < 1, 'max |mc-ref|/(4.5 SE + 0.5%%) = %.2f; max rel dev %.2e'
          % (dev.max(), relerr(m, ref)))


# ---------------------------------------------------------------------------------------------
# 4. Empirical NTK of a finite MLP, hand-written backprop.

def empirical_ntk_mlp(X, n, w, b, phi, dphi, param, rng):
    """f = dense(n) phi dense(n) phi dense(1).  ntk: z = (w/sqrt(fan_in)) W h + b beta with
    W, beta ~ N(0,1) trained; standard: z = W h + beta with W ~ N(0, w^2/fan_in), beta ~ N(0,b^2)
    trained directly.  Returns (f f^T, Theta) for the inputs X (N, D)."""
    N, D = X.shape
    sizes = [D, n, n, 1]
    Ws = [rng.standard_normal((sizes[i + 1], sizes[i])) for i in range(3)]
    bs = [rng.standard_normal(sizes[i + 1]) for i in range(3)]
    if param == 'ntk':
        mult = [w / math.sqrt(sizes[i]) for i in range(3)]
        bm = b
    else:
        Ws = [W * w / math.sqrt(sizes[i]) for i, W in enumerate(Ws)]
        bs = [bb * b for bb in bs]
        mult = [1.0, 1.0, 1.0]
        bm = 1.0
    # forward, keeping layer inputs and pre-activations (rows = samples)
    hs, zs = [X], []
    h = X
    for i in range(3):
        z = mult[i] * h @ Ws[i].T + bm * bs[i]
        zs.append(z)
        h = phi(z) if i < 2 else z
        hs.append(h)
    f = hs[-1][:, 0]
    # backward: delta_i = df/dz_i for each sample
    deltas = [None] * 3
    deltas[2] = np.ones((N, 1))
    for i in (1, 0):
        deltas[i] = (deltas[i + 1] @ Ws[i + 1]) * mult[i + 1] * dphi(zs[i])
    # Theta = sum over layers of (df/dW . df'/dW) + (df/dbeta . df'/dbeta)
    T = np.zeros((N, N))
    for i in range(3):
        dd = deltas[i] @ deltas[i].T
        T += mult[i] ** 2 * (hs[i] @ hs[i].T) * dd
        if b != 0.0:
            T += bm ** 2 * dd
    return np.outer(f, f), T


def check_mc_ntk():
    rng = np.random.default_rng(21)
    X = rng.standard_normal((4, 6))
    for fn, param, w, b, n, draws in (('relu', 'ntk', 1.2, 0.3, 1024, 40),
                                       ('erf', 'ntk', 1.5, 0.1, 1024, 40),
                                       ('relu', 'standard', 1.1, 0.2, 1024, 40)):
        phi, dphi = R.act_fn(fn)
        ir = [dense(), act(fn), dense(), act(fn), dense()]
        Kr, Tr = R.kernels(ir, X, param=param, w=w, b=b, width=n)
        Ts = np.array([empirical_ntk_mlp(X, n, w, b, phi, dphi, param, rng)[1]
                       for _ in range(draws)])
        m = Ts.mean(0)
        se = Ts.std(0) / math.sqrt(draws)
        scale = np.sqrt(np.outer(np.diag(Tr), np.diag(Tr)))
        dev = np.abs(m - Tr) / scale
        check('Monte Carlo empirical NTK %s MLP param=%s w=%g b=%g width %d' % (fn, param, w, b, n),
              dev.max() < 0.02,
              'max |mc-ref|/sqrt(T_ii T_jj) = %.2e (%.1f SE)' % (dev.max(),
                                                                 (np.abs(m - Tr) / se).max()))


# ---------------------------------------------------------------------------------------------
# 5. Bookkeeping.

def check_bookkeeping():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((4, 5, 4, 2))
    ir = [conv((3, 2), b=0.1), act('abrelu', a=-0.3, b=1.2), conv(3, stride=2, pad='valid'),
          act('relu'), gap(), dense()]
    K, T = R.kernels(ir, X)
    check('symmetric form is symmetric', relerr(K, K.T) < 1e-14 and relerr(T, T.T) < 1e-14)
    K12, T12 = R.kernels(ir, X[:2], X[1:])
    check('x1/x2 form equals the block of the symmetric form',
          relerr(K12, K[:2, 1:]) < 1e-13 and relerr(T12, T[:2, 1:]) < 1e-13)
    # dense on a 1x1 spatial input equals the MLP; conv(1) equals dense on each position
    Xm = rng.standard_normal((3, 5))
    a = R.kernels([dense(b=0.2), act('erf'), dense()], Xm)
    c = R.kernels([conv(1, b=0.2), act('erf'), flatten(), dense()], Xm[:, None, :])
    check('MLP equals conv(1) on one position', relerr(a[0], c[0]) < 1e-14
          and relerr(a[1], c[1]) < 1e-14)
    spec = R.render_spec([conv((3, 5), stride=2, pad='valid', w=1.5, b=0.1),
                          act('abrelu', a=-0.5, b=1.5), act('leaky_relu', alpha=0.1),
                          res(conv(3), act('relu')), R.repeat(2, conv(3), act('tanh')),
                          avgpool(2, stride=1), gap(), dense(width=64)],
                         w=1.41, b=0.1, param='standard', width=64)
    want = ('w=1.41 b=0.1 param=standard width=64 conv(3x5,stride=2,pad=valid,w=1.5,b=0.1) '
            'abrelu(-0.5,1.5) leaky_relu(0.1) res(conv(3) relu) [conv(3) tanh]*2 '
            'avgpool(2,stride=1) gap dense(width=64)')
    check('render_spec', spec == want, spec)


def main():
    t0 = time.time()
    for f in (check_closed_forms, check_duals, check_bookkeeping, check_mc_cnn, check_mc_res,
              check_mc_ntk):
        t = time.time()
        f()
        print('  (%s: %.1f s)' % (f.__name__, time.time() - t))
    print('total %.1f s' % (time.time() - t0))
    print('test_ref_selfcheck: %d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
