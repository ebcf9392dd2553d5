"""nt_ref.py -- an independent, deliberately simple reference for the infinite-width NNGP and
NTK kernels computed by nkern, following neural-tangents' conventions.

Nothing clever happens here: every pair of inputs (x, x') is computed on its own, and at every
layer the FULL spatial covariance K[p, p'] (all positions of x against all positions of x') is
kept, together with the NTK Theta[p, p'].  A nonlinearity at a pair needs each input's own
variances K(x,x)[p,p] at the same layer; these come from running the very same recursion on the
pair (x, x) first and recording the diagonal in front of every nonlinearity.

Architecture IR: a list of dicts (see `parse`-free constructors below and render_spec):
    {'op': 'dense', 'w': None, 'b': None, 'width': None}
    {'op': 'conv', 'f': 3 | (3, 5), 'stride': 1, 'pad': 'same'|'valid'|'circular', 'w', 'b', 'width'}
    {'op': 'act', 'fn': 'relu'|'erf'|'identity'|'tanh'|'gelu'|'sigmoid'|'sin'|'softplus'|'swish'
                        |'cos'|'exp'|'sign'}
    {'op': 'act', 'fn': 'rbf', 'gamma': 0.5}     (gamma absent: 1)
    {'op': 'act', 'fn': 'leaky_relu', 'alpha': 0.1}
    {'op': 'act', 'fn': 'abrelu', 'a': -0.5, 'b': 1.5}
    {'op': 'avgpool', 'k': 2, 'stride': None (= k), 'pad': 'valid'}
    {'op': 'flatten'}, {'op': 'gap'}
    {'op': 'res', 'body': [...]}                 x + body(x)
    {'op': 'repeat', 'n': 3, 'body': [...]}      body repeated n times
A key that is absent or None falls back to the global defaults (w=1, b=0, width=1, param=ntk),
which kernels()/render_spec() take as keyword arguments.

Public functions:
    kernels(ir, X1, X2=None, param='ntk', w=1.0, b=0.0, width=1, quad_order=QUAD_ORDER)
        -> (nngp[N1, N2], ntk[N1, N2])
    render_spec(ir, param=None, w=None, b=None, width=None) -> nkern spec text
"""
import itertools
import math

import numpy as np

# Gauss-Hermite nodes per axis for the activations without a closed form.  tanh converges
# slowest (poles at +-i pi/2): order 300 is within ~1e-10 of a composite Gauss-Legendre rule
# for variances up to 4; the others are within ~1e-11 by order 120 (tests/test_ref_selfcheck.py
# checks both against the Gauss-Legendre rule).  None -> this table.
QUAD_ORDER = None
_ORDER = {'tanh': 300, 'gelu': 120, 'sigmoid': 120, 'softplus': 120, 'swish': 120}

CLOSED_FORM = ('relu', 'erf', 'identity', 'leaky_relu', 'abrelu', 'sin', 'cos', 'exp', 'rbf', 'sign')
QUADRATURE = ('tanh', 'gelu', 'sigmoid', 'softplus', 'swish')


# --------------------------------------------------------------------------------------------
# Elementwise functions and their derivatives (for the quadrature path).

def _sigmoid(x):
    # numerically safe logistic function
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def _Phi(x):
    # standard normal CDF via math.erf (vectorised)
    return 0.5 * (1.0 + _verf(x / math.sqrt(2.0)))


_erf_u = np.frompyfunc(math.erf, 1, 1)


def _verf(x):
    """erf for numpy arrays: the C library's erf (math.erf) applied elementwise."""
    return _erf_u(np.asarray(x, float)).astype(float)


def _phi_pdf(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def act_fn(name, gamma=1.0):
    """(phi, dphi) as numpy functions (gamma: rbf's parameter)."""
    if name == 'cos':
        return np.cos, lambda x: -np.sin(x)
    if name == 'exp':
        return np.exp, np.exp
    if name == 'sign':
        # the derivative almost everywhere (a delta at 0 that no finite network's gradient sees)
        return np.sign, np.zeros_like
    if name == 'rbf':
        s = math.sqrt(2.0 * gamma)
        return (lambda x: math.sqrt(2.0) * np.sin(s * x + math.pi / 4)), \
               (lambda x: math.sqrt(2.0) * s * np.cos(s * x + math.pi / 4))
    if name == 'tanh':
        return np.tanh, lambda x: 1.0 - np.tanh(x) ** 2
    if name == 'sigmoid':
        return _sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x))
    if name == 'softplus':
        return (lambda x: np.logaddexp(0.0, x)), _sigmoid
    if name == 'swish':
        return (lambda x: x * _sigmoid(x)), \
               (lambda x: _sigmoid(x) + x * _sigmoid(x) * (1.0 - _sigmoid(x)))
    if name == 'gelu':
        return (lambda x: x * _Phi(x)), (lambda x: _Phi(x) + x * _phi_pdf(x))
    if name == 'sin':
        return np.sin, np.cos
    if name == 'erf':
        return _verf, lambda x: 2.0 / math.sqrt(math.pi) * np.exp(-x * x)
    if name == 'relu':
        return (lambda x: np.maximum(x, 0.0)), (lambda x: (x > 0).astype(float))
    if name == 'identity':
        return (lambda x: x), (lambda x: np.ones_like(x))
    raise ValueError(name)


# --------------------------------------------------------------------------------------------
# Dual activations: given the variances a = K(x,x)[p,p], b = K(x',x')[p',p'] and the covariance
# c = K(x,x')[p,p'] (arrays of one shape), return (E[phi(u)phi(v)], E[phi'(u)phi'(v)]).

def _relu_dual(a, b, c):
    s = np.sqrt(a * b)
    rho = np.clip(c / s, -1.0, 1.0)
    th = np.arccos(rho)
    kk = s / (2 * math.pi) * (np.sin(th) + (math.pi - th) * np.cos(th))
    dd = (math.pi - th) / (2 * math.pi)
    return kk, dd


def _abrelu_dual(lo, hi, a, b, c):
    # phi(x) = lo*x + (hi-lo)*relu(x); E[u relu(v)] = c/2 by symmetry of (u,v) -> (-u,-v).
    r, dr = _relu_dual(a, b, c)
    kk = lo * hi * c + (hi - lo) ** 2 * r
    dd = lo * hi + (hi - lo) ** 2 * dr
    return kk, dd


def _erf_dual(a, b, c):
    den = (1 + 2 * a) * (1 + 2 * b)
    kk = 2 / math.pi * np.arcsin(np.clip(2 * c / np.sqrt(den), -1.0, 1.0))
    dd = 4 / math.pi / np.sqrt(den - 4 * c * c)
    return kk, dd


def _sin_dual(a, b, c):
    # u, v jointly Gaussian: E[sin u sin v] = (E cos(u-v) - E cos(u+v))/2,
    # E cos(w) = exp(-var(w)/2), var(u -+ v) = a + b -+ 2c.
    e = np.exp(-(a + b) / 2)
    return e * np.sinh(c), e * np.cosh(c)


def _cos_dual(a, b, c):
    # cos u cos v = (cos(u - v) + cos(u + v))/2 and sin u sin v = (cos(u - v) - cos(u + v))/2,
    # with E cos(w) = exp(-var(w)/2), var(u -+ v) = a + b -+ 2c.
    em, ep = np.exp(-(a + b - 2 * c) / 2), np.exp(-(a + b + 2 * c) / 2)
    return (em + ep) / 2, (em - ep) / 2


def _exp_dual(a, b, c):
    # the moment generating function of u + v ~ N(0, a + b + 2c) at 1; exp' = exp
    e = np.exp((a + b + 2 * c) / 2)
    return e, e


def _rbf_dual(gamma, a, b, c):
    # neural-tangents' Rbf: phi = sqrt2 sin(sqrt(2 gamma) x + pi/4), NNGP exp(-gamma |u - v|^2)
    e = np.exp(-gamma * np.maximum(a + b - 2 * c, 0.0))
    return e, 2 * gamma * e


def _sign_dual(a, b, c):
    # P(sign u != sign v) = theta/pi for the angle theta between u and v (pi/2 when a variance
    # is 0: sign 0 = 0 gives 0); the derivative kernel is 0 (sign' = 0 almost everywhere).
    theta = np.arctan2(np.sqrt(np.maximum(a * b - c * c, 0.0)), c)
    theta = np.where(a * b > 0, theta, math.pi / 2)
    return 1 - 2 * theta / math.pi, np.zeros_like(theta)


_GH_CACHE = {}


def gh_nodes(n):
    """Probabilists' Gauss-Hermite nodes and weights normalised to a N(0,1) expectation."""
    if n not in _GH_CACHE:
        z, w = np.polynomial.hermite_e.hermegauss(n)
        _GH_CACHE[n] = (z, w / w.sum())
    return _GH_CACHE[n]


GH_MAX_VAR = 4.0   # above this variance Gauss-Hermite loses accuracy: composite Gauss-Legendre


def quad_dual(name, a, b, c, order=None):
    """E[phi(u)phi(v)], E[phi'(u)phi'(v)] with u = sqrt(a) z1, v = sqrt(b) (rho z1 +
    sqrt(1-rho^2) z2), z1, z2 independent N(0,1).  A product Gauss-Hermite rule in (z1, z2)
    where both variances are <= GH_MAX_VAR; elsewhere (Gauss-Hermite converges slowly when the
    scaled function varies on a scale << 1 in z) a composite Gauss-Legendre rule with panels of
    width min(0.25, 1/sqrt(max variance))."""
    a, b, c = (t.ravel() for t in np.broadcast_arrays(np.asarray(a, float),
                                                      np.asarray(b, float),
                                                      np.asarray(c, float)))
    big = np.maximum(a, b) > GH_MAX_VAR
    if order is None and big.any():
        kk, dd = _quad_dual_gh(name, a, b, c, order)
        for i in np.nonzero(big)[0]:
            h = min(0.25, 1.0 / math.sqrt(max(a[i], b[i])))
            k1, d1 = quad_dual_gl(name, [a[i]], [b[i]], [c[i]], h=h)
            kk[i], dd[i] = k1[0], d1[0]
        return kk, dd
    return _quad_dual_gh(name, a, b, c, order)


def _quad_dual_gh(name, a, b, c, order=None):
    phi, dphi = act_fn(name)
    order = order or _ORDER.get(name, 200)
    z, wq = gh_nodes(order)
    a = np.asarray(a, float).ravel()
    b = np.asarray(b, float).ravel()
    c = np.asarray(c, float).ravel()
    shape = np.broadcast(a, b, c).shape
    a, b, c = (np.broadcast_to(t, shape).ravel() for t in (a, b, c))
    kk = np.empty(shape[0])
    dd = np.empty(shape[0])
    step = max(1, 2000000 // (order * order))
    for s0 in range(0, shape[0], step):
        sl = slice(s0, s0 + step)
        sa, sb = np.sqrt(a[sl]), np.sqrt(b[sl])
        with np.errstate(invalid='ignore', divide='ignore'):
            rho = np.where(sa * sb > 0, c[sl] / (sa * sb), 0.0)
        rho = np.clip(rho, -1.0, 1.0)
        u = sa[:, None] * z[None, :]                                   # (m, n)
        v = sb[:, None, None] * (rho[:, None, None] * z[None, :, None]
                                 + np.sqrt(1 - rho * rho)[:, None, None] * z[None, None, :])
        for fn, out in ((phi, kk), (dphi, dd)):
            inner = np.einsum('mij,j->mi', fn(v), wq)                  # E_z2[f(v) | z1]
            out[sl] = np.einsum('mi,mi,i->m', fn(u), inner, wq)
    return kk, dd


def gl_nodes(L=9.0, h=0.25, m=16):
    """A second, independent rule for N(0,1) expectations: composite Gauss-Legendre with m
    nodes on each panel of width h over [-L, L] (the Gaussian tail beyond 9 is < 1e-18)."""
    x, w = np.polynomial.legendre.leggauss(m)
    npan = int(math.ceil(2 * L / h))
    h = 2 * L / npan
    left = -L + h * np.arange(npan)
    z = (left[:, None] + h / 2 * (x[None, :] + 1)).ravel()
    wz = np.tile(h / 2 * w, len(left)) * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return z, wz


def quad_dual_gl(name, a, b, c, gamma=1.0, **kw):
    """As quad_dual, with the composite Gauss-Legendre rule (slow; for checking only)."""
    phi, dphi = act_fn(name, gamma)
    z, wq = gl_nodes(**kw)
    kk, dd = [], []
    for ai, bi, ci in zip(np.ravel(a), np.ravel(b), np.ravel(c)):
        sa, sb = math.sqrt(ai), math.sqrt(bi)
        rho = max(-1.0, min(1.0, ci / (sa * sb)))
        u = sa * z
        v = sb * (rho * z[:, None] + math.sqrt(1 - rho * rho) * z[None, :])
        kk.append(wq @ (phi(u) * (phi(v) @ wq)))
        dd.append(wq @ (dphi(u) * (dphi(v) @ wq)))
    return np.array(kk), np.array(dd)


def dual(layer, a, b, c, order=QUAD_ORDER):
    fn = layer['fn']
    if fn == 'identity':
        return c.copy(), np.ones_like(c)
    if fn == 'relu':
        return _relu_dual(a, b, c)
    if fn == 'leaky_relu':
        return _abrelu_dual(layer['alpha'], 1.0, a, b, c)
    if fn == 'abrelu':
        return _abrelu_dual(layer['a'], layer['b'], a, b, c)
    if fn == 'erf':
        return _erf_dual(a, b, c)
    if fn == 'sin':
        return _sin_dual(a, b, c)
    if fn == 'cos':
        return _cos_dual(a, b, c)
    if fn == 'exp':
        return _exp_dual(a, b, c)
    if fn == 'rbf':
        return _rbf_dual(layer.get('gamma', 1.0), a, b, c)
    if fn == 'sign':
        return _sign_dual(a, b, c)
    if fn in QUADRATURE:
        kk, dd = quad_dual(fn, a, b, c, order)
        return kk.reshape(c.shape), dd.reshape(c.shape)
    raise ValueError('unknown activation %r' % fn)


# --------------------------------------------------------------------------------------------
# Spatial index maps for conv / pooling windows.

def _window_indices(n, f, s, pad):
    """For one axis of length n: output length m and, for each output q and offset d in the
    window, the input index q*s + d - pb (wrapped for circular) and whether it is in range."""
    if pad == 'valid':
        m = (n - f) // s + 1
        pb = 0
    elif pad in ('same', 'circular'):
        m = -(-n // s)
        total = max((m - 1) * s + f - n, 0)
        pb = total // 2
    else:
        raise ValueError(pad)
    if m <= 0:
        raise ValueError('window %d larger than input %d with pad=valid' % (f, n))
    idx = np.zeros((m, f), dtype=int)
    ok = np.zeros((m, f), dtype=bool)
    for q in range(m):
        for d in range(f):
            i = q * s + d - pb
            if pad == 'circular':
                idx[q, d], ok[q, d] = i % n, True
            elif 0 <= i < n:
                idx[q, d], ok[q, d] = i, True
    return m, idx, ok


def _gather(M, shp1, shp2, ix1, ix2):
    """M has shape shp1 + shp2 (spatial of x, spatial of x').  ix1 is a list over the axes of x
    of (idx[q], ok[q]) vectors, ix2 likewise for x'.  Returns M[idx1..., idx2...] with the
    out-of-range entries set to zero."""
    idxs = [i for i, _ in ix1] + [i for i, _ in ix2]
    oks = [o for _, o in ix1] + [o for _, o in ix2]
    g = M[np.ix_(*idxs)] if idxs else M.copy()
    mask = np.ones(g.shape, dtype=bool)
    for ax, o in enumerate(oks):
        sh = [1] * len(oks)
        sh[ax] = len(o)
        mask = mask & o.reshape(sh)
    return np.where(mask, g, 0.0)


def conv_cov(M, shp1, shp2, f, s, pad, same_offset=True):
    """Window average of a covariance over pairs of positions.
    same_offset=True  (convolution): (1/|W|) sum_d M[q s + d - pb, q' s + d - pb]
    same_offset=False (avg pooling):  (1/|W|^2) sum_{d,d'} M[q s + d - pb, q' s + d' - pb]
    Returns (M', out_shape1, out_shape2)."""
    d = len(shp1)
    maps1 = [_window_indices(shp1[i], f[i], s[i], pad) for i in range(d)]
    maps2 = [_window_indices(shp2[i], f[i], s[i], pad) for i in range(d)]
    o1 = tuple(m for m, _, _ in maps1)
    o2 = tuple(m for m, _, _ in maps2)
    out = np.zeros(o1 + o2)
    offsets = list(itertools.product(*[range(fi) for fi in f]))
    pairs = [(dl, dl) for dl in offsets] if same_offset else \
        list(itertools.product(offsets, offsets))
    for dl1, dl2 in pairs:
        ix1 = [(maps1[i][1][:, dl1[i]], maps1[i][2][:, dl1[i]]) for i in range(d)]
        ix2 = [(maps2[i][1][:, dl2[i]], maps2[i][2][:, dl2[i]]) for i in range(d)]
        out += _gather(M, shp1, shp2, ix1, ix2)
    return out / len(pairs), o1, o2


# --------------------------------------------------------------------------------------------
# The recursion for one pair.

class _State:
    def __init__(self, K, T, shp1, shp2, C):
        self.K, self.T, self.shp1, self.shp2, self.C = K, T, shp1, shp2, C


def _opt(layer, key, defaults):
    v = layer.get(key)
    return defaults[key] if v is None else v


def _filter(layer, d):
    f = layer['f']
    if isinstance(f, int):
        return (f,) * d
    f = tuple(f)
    if len(f) != d:
        raise ValueError('filter %r for %d spatial axes' % (f, d))
    return f


def _diag(M, shp):
    """diag of a self covariance of shape shp + shp, as an array of shape shp."""
    P = int(np.prod(shp)) if shp else 1
    return np.diagonal(M.reshape(P, P)).reshape(shp).copy()


def _run(layers, st, defaults, selfdiag, rec):
    """Apply layers to state st.  selfdiag: None for a self-pair (x, x) -- the variances are
    then the diagonal of K itself and are appended to rec -- or an iterator yielding, for each
    nonlinearity in traversal order, (diag K(x,x), diag K(x',x'))."""
    param = defaults['param']
    for L in layers:
        op = L['op']
        d = len(st.shp1)
        if op in ('dense', 'conv'):
            w, b = float(_opt(L, 'w', defaults)), float(_opt(L, 'b', defaults))
            width = _opt(L, 'width', defaults)
            if op == 'dense':
                Km, Tm, o1, o2, nwin = st.K, st.T, st.shp1, st.shp2, 1
            else:
                if d == 0:
                    raise ValueError('conv on an input without spatial axes')
                f = _filter(L, d)
                s = (int(L.get('stride') or 1),) * d
                pad = L.get('pad') or 'same'
                Km, o1, o2 = conv_cov(st.K, st.shp1, st.shp2, f, s, pad)
                Tm, _, _ = conv_cov(st.T, st.shp1, st.shp2, f, s, pad)
                nwin = int(np.prod(f))
            Knew = w * w * Km + b * b
            if param == 'ntk':
                Tnew = Knew + w * w * Tm
            elif param == 'standard':
                fan_in = st.C * nwin
                Tnew = fan_in * Km + w * w * Tm + (1.0 if b != 0.0 else 0.0)
            else:
                raise ValueError(param)
            st = _State(Knew, Tnew, o1, o2, width)
        elif op == 'act':
            if selfdiag is None:
                a = _diag(st.K, st.shp1)
                rec.append(a)
                bb = a
            else:
                a, bb = next(selfdiag)
            A = a.reshape(st.shp1 + (1,) * len(st.shp2))
            B = bb.reshape((1,) * len(st.shp1) + st.shp2)
            A, B = np.broadcast_to(A, st.K.shape), np.broadcast_to(B, st.K.shape)
            kk, dd = dual(L, A, B, st.K, defaults['quad_order'])
            st = _State(np.asarray(kk, float).reshape(st.K.shape),
                        st.T * np.asarray(dd, float).reshape(st.K.shape),
                        st.shp1, st.shp2, st.C)
        elif op == 'flatten':
            P = int(np.prod(st.shp1)) if d else 1
            st = _State(np.array(np.trace(st.K.reshape(P, P)) / P),
                        np.array(np.trace(st.T.reshape(P, P)) / P), (), (), st.C * P)
        elif op == 'gap':
            st = _State(np.array(st.K.mean()), np.array(st.T.mean()), (), (), st.C)
        elif op == 'avgpool':
            if d == 0:
                raise ValueError('avgpool on an input without spatial axes')
            k = _filter({'f': L['k']}, d)
            s = (int(L.get('stride') or L['k']),) * d if not isinstance(L.get('stride'), tuple) \
                else L['stride']
            pad = L.get('pad') or 'valid'
            Km, o1, o2 = conv_cov(st.K, st.shp1, st.shp2, k, s, pad, same_offset=False)
            Tm, _, _ = conv_cov(st.T, st.shp1, st.shp2, k, s, pad, same_offset=False)
            st = _State(Km, Tm, o1, o2, st.C)
        elif op == 'res':
            out = _run(L['body'], st, defaults, selfdiag, rec)
            if out.K.shape != st.K.shape:
                raise ValueError('res body changes the spatial shape %r -> %r'
                                 % (st.K.shape, out.K.shape))
            st = _State(st.K + out.K, st.T + out.T, st.shp1, st.shp2, out.C)
        elif op == 'repeat':
            for _ in range(int(L['n'])):
                st = _run(L['body'], st, defaults, selfdiag, rec)
        else:
            raise ValueError('unknown op %r' % op)
    return st


def _input_state(x1, x2):
    x1 = np.asarray(x1, float)
    x2 = np.asarray(x2, float)
    C = x1.shape[-1]
    if x1.ndim == 1:
        K = np.array(np.dot(x1, x2) / C)
    else:
        s1, s2 = x1.shape[:-1], x2.shape[:-1]
        K = (x1.reshape(-1, C) @ x2.reshape(-1, C).T / C).reshape(s1 + s2)
    return _State(K, np.zeros_like(K), x1.shape[:-1], x2.shape[:-1], C)


def pair_kernel(ir, x1, x2, self1, self2, defaults):
    """Kernel of one pair given each sample's recorded self variances."""
    it = iter(zip(self1, self2))
    st = _run(ir, _input_state(x1, x2), defaults, it, None)
    if st.K.ndim != 0:
        raise ValueError('architecture does not end in a scalar readout (flatten/gap + dense)')
    return float(st.K), float(st.T)


def self_record(ir, x, defaults):
    rec = []
    st = _run(ir, _input_state(x, x), defaults, None, rec)
    return rec, float(st.K), float(st.T)


def kernels(ir, X1, X2=None, param='ntk', w=1.0, b=0.0, width=1, quad_order=QUAD_ORDER):
    defaults = dict(param=param, w=w, b=b, width=width, quad_order=quad_order)
    X1 = np.asarray(X1, float)
    X2 = X1 if X2 is None else np.asarray(X2, float)
    rec1 = [self_record(ir, x, defaults)[0] for x in X1]
    rec2 = rec1 if X2 is X1 else [self_record(ir, x, defaults)[0] for x in X2]
    nngp = np.zeros((len(X1), len(X2)))
    ntk = np.zeros((len(X1), len(X2)))
    for i in range(len(X1)):
        for j in range(len(X2)):
            nngp[i, j], ntk[i, j] = pair_kernel(ir, X1[i], X2[j], rec1[i], rec2[j], defaults)
    return nngp, ntk


# --------------------------------------------------------------------------------------------
# Rendering to nkern's spec language.

def _num(v):
    v = float(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _kv(L, keys):
    out = []
    for k in keys:
        if L.get(k) is not None:
            out.append('%s=%s' % (k, _num(L[k]) if k in ('w', 'b') else L[k]))
    return out


def _render_layers(layers):
    toks = []
    for L in layers:
        op = L['op']
        if op == 'dense':
            kv = _kv(L, ('w', 'b', 'width'))
            toks.append('dense(%s)' % ','.join(kv) if kv else 'dense')
        elif op == 'conv':
            f = L['f']
            fs = str(f) if isinstance(f, int) else 'x'.join(str(t) for t in f)
            args = [fs]
            if L.get('stride') is not None:
                args.append('stride=%d' % L['stride'])
            if L.get('pad') is not None:
                args.append('pad=%s' % L['pad'])
            args += _kv(L, ('w', 'b', 'width'))
            toks.append('conv(%s)' % ','.join(args))
        elif op == 'act':
            fn = L['fn']
            if fn == 'leaky_relu':
                toks.append('leaky_relu(%s)' % _num(L['alpha']))
            elif fn == 'abrelu':
                toks.append('abrelu(%s,%s)' % (_num(L['a']), _num(L['b'])))
            elif fn == 'rbf' and L.get('gamma') is not None:
                toks.append('rbf(gamma=%s)' % _num(L['gamma']))
            else:
                toks.append(fn)
        elif op in ('flatten', 'gap'):
            toks.append(op)
        elif op == 'avgpool':
            k = L['k']
            args = [str(k) if isinstance(k, int) else 'x'.join(str(t) for t in k)]
            if L.get('stride') is not None:
                args.append('stride=%d' % L['stride'])
            if L.get('pad') is not None:
                args.append('pad=%s' % L['pad'])
            toks.append('avgpool(%s)' % ','.join(args))
        elif op == 'res':
            toks.append('res(%s)' % _render_layers(L['body']))
        elif op == 'repeat':
            toks.append('[%s]*%d' % (_render_layers(L['body']), L['n']))
        else:
            raise ValueError(op)
    return ' '.join(toks)


def render_spec(ir, param=None, w=None, b=None, width=None, quad=None):
    """nkern spec text; global defaults given here become leading key=value tokens.
    quad (nkern's quadrature order) has no effect on the reference, which always uses its own
    rule (see QUAD_ORDER)."""
    g = []
    if quad is not None:
        g.append('quad=%d' % quad)
    if w is not None:
        g.append('w=%s' % _num(w))
    if b is not None:
        g.append('b=%s' % _num(b))
    if param is not None:
        g.append('param=%s' % param)
    if width is not None:
        g.append('width=%d' % width)
    return ' '.join(g + [_render_layers(ir)])


# Small constructors for readability in tests.
def dense(**kw):
    return dict(op='dense', **kw)


def conv(f, **kw):
    return dict(op='conv', f=f, **kw)


def act(fn, **kw):
    return dict(op='act', fn=fn, **kw)


def flatten():
    return dict(op='flatten')


def gap():
    return dict(op='gap')


def avgpool(k, **kw):
    return dict(op='avgpool', k=k, **kw)


def res(*body):
    return dict(op='res', body=list(body))


def repeat(n, *body):
    return dict(op='repeat', n=n, body=list(body))
