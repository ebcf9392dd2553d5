"""Peer for the benchmark rows of pooled, strided, residual and smooth-activation CNNs:
neural-tangents' algorithm for a CNN kernel, written in vectorized PyTorch (CPU).

neural-tangents needs JAX, which Debian does not package; this follows what its stax layers
do with `kernel_fn(x1, x2)` for these networks (diagonal_batch, full spatial covariances):
  - the state of every pair is its full position-pair covariance K12 (B, H, W, H, W) and the
    NTK T12; every sample keeps its own full covariance cov (H, W, H, W) (pooling mixes
    positions, so the variances after a pool need the off-diagonal entries of cov);
  - a conv is the same-offset window mean along (h, h') and (w, w') with zero padding, then the
    positions s q on both sides for a stride s; an average pool the mean over independent
    offsets (windows side by side: a reshape and a mean);
  - ReLU by the arc-cosine formulas; gelu by its closed form, as neural-tangents' stax.Gelu;
    tanh, which neural-tangents has no layer for, as its ElementwiseNumerical does it
    (bivariate Gauss-Hermite quadrature with deg = 25 points per axis, the degree its
    documentation starts from; the derivative kernel with the analytic derivative);
  - res(f) = x + f(x): both branches' states added; GAP the mean of all entries; flatten the
    mean of the diagonal; then the dense readout.  NTK parameterization.
Timing: ms per kernel entry over --n x --n cross pairs including the samples' own covariances.
The quadrature rows cost minutes per pair at 32x32 (as they would in neural-tangents): with
--time-layers K only the first K activation layers (each with the conv after it) of one pair and
of its two samples' own passes are run, and the time is scaled to the network's depth (every
such layer costs the same: same grid, same work) and to the n x n pairs and 2n samples.

usage: python3 peer_nt.py --arch myrtle5 --hw 32 --n 4 [--f32] [--threads 2] [--time-layers K]
prints: ms_per_entry=<float>
"""
import argparse
import math
import os
import time

import numpy as np
import torch

W2 = 2.0          # Myrtle's W_std^2 = 2 (and the other rows')
B2 = 0.01         # b_std^2 of the other rows (b = 0.1)


def arch(name):
    """The rows' networks as lists of ('conv', f, s, w2, b2) / ('act', fn) / ('pool', 2) /
    ('res', [...]) / ('gap',) / ('flatten',) / ('dense', w2, b2)."""
    def cr(n, fn='relu', b2=0.0):
        return [('conv', 3, 1, W2, b2), ('act', fn)] * n
    if name in ('myrtle5', 'myrtle10'):
        k = {'myrtle5': (2, 1, 1), 'myrtle10': (3, 3, 3)}[name]
        return (cr(k[0]) + [('pool', 2)] + cr(k[1]) + [('pool', 2)] + cr(k[2]) + [('pool', 2)] * 3 +
                [('flatten',), ('dense', W2, 0.0)])
    if name == 'strided':
        down = [('conv', 3, 2, W2, B2), ('act', 'relu')]
        return cr(2, b2=B2) + down + cr(2, b2=B2) + down + cr(2, b2=B2) + [('gap',), ('dense', W2, B2)]
    if name == 'resnet4':
        block = ('res', [('conv', 3, 1, W2, B2), ('act', 'relu'), ('conv', 3, 1, W2, B2)])
        return cr(1, b2=B2) + [block, ('act', 'relu')] * 4 + [('gap',), ('dense', W2, B2)]
    if name in ('gelu21', 'tanh21'):
        return cr(21, name[:4], B2) + [('gap',), ('dense', W2, B2)]
    raise SystemExit('peer_nt.py: unknown --arch ' + name)


def window_same(K, f, s, ax):
    """Same-offset window mean of K along the axis pair (ax, ax + 2) (batch first), zero
    padding as neural-tangents' SAME, then the positions s q on both axes."""
    n = K.shape[ax]
    out = -(-n // s)
    pb = max((out - 1) * s + f - n, 0) // 2
    pa = max((out - 1) * s + f - n, 0) - pb
    pad = [0, 0] * K.dim()
    for a in (ax, ax + 2):
        i = K.dim() - 1 - a
        pad[2 * i], pad[2 * i + 1] = pb, pa + f
    Kp = torch.nn.functional.pad(K, pad)
    acc = None
    for d in range(f):
        sl = [slice(None)] * K.dim()
        sl[ax] = slice(d, d + n)
        sl[ax + 2] = slice(d, d + n)
        acc = Kp[tuple(sl)] if acc is None else acc + Kp[tuple(sl)]
    sl = [slice(None)] * K.dim()
    sl[ax] = slice(0, (out - 1) * s + 1, s)
    sl[ax + 2] = slice(0, (out - 1) * s + 1, s)
    return acc[tuple(sl)] / f


def conv(K, f, s):
    return window_same(window_same(K, f, s, 1), f, s, 2)


def pool2(K):
    """avgpool(2): windows side by side, independent offsets on the two sides (valid)"""
    B, H, W = K.shape[0], K.shape[1] // 2, K.shape[2] // 2
    K = K[:, :2 * H, :2 * W, :2 * H, :2 * W].reshape(B, H, 2, W, 2, H, 2, W, 2)
    return K.mean(dim=(2, 4, 6, 8))


def diag(K):
    B, H, W = K.shape[:3]
    return torch.diagonal(K.reshape(B, H * W, H * W), dim1=1, dim2=2).reshape(B, H, W)


def outer(d1, d2):
    return d1[:, :, :, None, None], d2[:, None, None, :, :]


GH = {}


def gauss_hermite(deg, dtype):
    """nodes and weights for E over a standard normal"""
    if (deg, dtype) not in GH:
        x, w = np.polynomial.hermite_e.hermegauss(deg)
        GH[(deg, dtype)] = (torch.tensor(x, dtype=dtype), torch.tensor(w / w.sum(), dtype=dtype))
    return GH[(deg, dtype)]


def quad_dual(fn, dfn, K, a, b, want_dot, deg=25, chunk=1 << 14):
    """E[fn(u) fn(v)] and E[dfn(u) dfn(v)] for (u, v) normal with variances a, b and covariance
    K (broadcast), by deg x deg Gauss-Hermite points: u = sqrt(a) x, v = c/sqrt(a) x + sqrt(b -
    c^2/a) y, vectorized over chunks of entries"""
    x, w = gauss_hermite(deg, K.dtype)
    a, b = torch.broadcast_to(a, K.shape).reshape(-1), torch.broadcast_to(b, K.shape).reshape(-1)
    c = K.reshape(-1)
    out = torch.empty_like(c)
    dot = torch.empty_like(c) if want_dot else None
    ww = (w[:, None] * w[None, :]).reshape(-1)
    for s in range(0, c.numel(), chunk):
        cs, as_, bs = c[s:s + chunk], a[s:s + chunk], b[s:s + chunk]
        sa = torch.sqrt(as_).clamp_min(1e-300)
        u = sa[:, None] * x[None, :]
        rho = cs / sa
        r = torch.sqrt((bs - rho * rho).clamp_min(0))
        v = (rho[:, None, None] * x[None, :, None] + r[:, None, None] * x[None, None, :]).reshape(len(cs), -1)
        uu = u[:, :, None].expand(-1, deg, deg).reshape(len(cs), -1)
        out[s:s + chunk] = (fn(uu) * fn(v)) @ ww
        if want_dot:
            dot[s:s + chunk] = (dfn(uu) * dfn(v)) @ ww
    return out.reshape(K.shape), (dot.reshape(K.shape) if want_dot else None)


def gelu(x):
    return x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def dgelu(x):
    return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def dtanh(x):
    t = torch.tanh(x)
    return 1 - t * t


def act(fn, K, d1, d2, T=None):
    """the activation on a full covariance K with variances d1 (rows), d2 (columns)"""
    a, b = outer(d1, d2)
    if fn == 'relu':
        prod = torch.sqrt(a * b)
        c = torch.clamp(K / prod, -1.0, 1.0)
        th = torch.arccos(c)
        Kn = prod / (2 * math.pi) * (torch.sin(th) + (math.pi - th) * c)
        return Kn, (T * (math.pi - th) / (2 * math.pi) if T is not None else None)
    if fn == 'gelu':
        # neural-tangents' stax.Gelu: a closed form (here the one of nkern's act.c, in the
        # bivariate normal's arcsine; S2 = (1 + a)(1 + b), D = S2 - K^2)
        s2 = (1 + a) * (1 + b)
        d = 1 + a + b + torch.clamp(a * b - K * K, min=0.0)
        asn = torch.arcsin(torch.clamp(K / torch.sqrt(s2), -1.0, 1.0))
        rd = torch.sqrt(d)
        Kn = 0.25 * K + K * asn / (2 * math.pi) + (a * b * d + K * K) / (2 * math.pi * s2 * rd)
        if T is None:
            return Kn, None
        dot = 0.25 + asn / (2 * math.pi) + K * (3 + a + b + K * K / d) / (2 * math.pi * s2 * rd)
        return Kn, T * dot
    # tanh: neural-tangents has no closed form; its users run ElementwiseNumerical(tanh, deg)
    f, df = torch.tanh, dtanh
    Kn, dot = quad_dual(f, df, K, a, b, T is not None)
    return Kn, (T * dot if T is not None else None)


class Timer:
    """Times the activations first .. first + k - 1 (each with the conv after it) of every pass
    and stops the pass there (StopIteration)"""
    def __init__(self, first, k):
        self.first, self.k, self.t0, self.total = first, k, 0.0, 0.0

    def at(self, i):
        if i == self.first:
            self.t0 = time.perf_counter()
        if i == self.first + self.k:
            self.total += time.perf_counter() - self.t0
            raise StopIteration


def run_cov(layers, K, T, d_of, record, timer=None):
    """one pass of the recursion on K (and T, if not None), full; d_of(i, d) gives the variances
    of activation i (d: the diagonal of K there), record(i, d) stores them"""
    ai = [0]

    def walk(layers, K, T):
        for L in layers:
            if L[0] == 'conv':
                _, f, s, w2, b2 = L
                M = conv(K, f, s)
                K = w2 * M + b2
                if T is not None:
                    T = K + w2 * conv(T, f, s)
            elif L[0] == 'act':
                if timer is not None:
                    timer.at(ai[0])
                d = diag(K)
                if record is not None:
                    record(ai[0], d)
                d1, d2 = d_of(ai[0], d)
                K, T = act(L[1], K, d1, d2, T)
                ai[0] += 1
            elif L[0] == 'pool':
                K = pool2(K)
                if T is not None:
                    T = pool2(T)
            elif L[0] == 'res':
                K2, T2 = walk(L[1], K, T)
                K, T = K + K2, (T + T2 if T is not None else None)
            elif L[0] == 'gap':
                K = K.mean(dim=(1, 2, 3, 4))
                T = T.mean(dim=(1, 2, 3, 4)) if T is not None else None
            elif L[0] == 'flatten':
                K = diag(K).mean(dim=(1, 2))
                T = diag(T).mean(dim=(1, 2)) if T is not None else None
            elif L[0] == 'dense':
                _, w2, b2 = L
                K = w2 * K + b2
                if T is not None:
                    T = K + w2 * T
        return K, T
    try:
        return walk(layers, K, T)
    except StopIteration:
        return None


def kernel(layers, x1, x2, batch, timer=None, timer_pairs=None):
    """neural-tangents' kernel_fn(x1, x2): each sample's own full covariance through the network
    (its variances recorded per activation), then the pairs' K12 and T12 in batches"""
    C = x1.shape[-1]
    recs = []
    for x in (x1, x2):
        rec = {}
        for s in range(x.shape[0]):
            K = torch.einsum('bijc,bklc->bijkl', x[s:s + 1], x[s:s + 1]) / C

            def record(i, d, rec=rec):
                rec.setdefault(i, []).append(d)
            run_cov(layers, K, None, lambda i, d: (d, d), record, timer)
        recs.append({i: torch.cat(v) for i, v in rec.items()})
    n1, n2 = x1.shape[0], x2.shape[0]
    I = torch.arange(n1).repeat_interleave(n2)
    J = torch.arange(n2).repeat(n1)
    out = []
    for s in range(0, n1 * n2, batch):
        i, j = I[s:s + batch], J[s:s + batch]
        K = torch.einsum('bijc,bklc->bijkl', x1[i], x2[j]) / C
        out.append(run_cov(layers, K, torch.zeros_like(K), lambda a, d: (recs[0][a][i], recs[1][a][j]), None,
                           timer_pairs or timer))
    return out


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--arch', required=True)
    ap.add_argument('--hw', type=int, default=32)
    ap.add_argument('--c', type=int, default=3)
    ap.add_argument('--n', type=int, default=4, help='samples on each side (n x n cross pairs)')
    ap.add_argument('--batch', type=int, default=4, help='pairs per batch')
    ap.add_argument('--f32', action='store_true')
    ap.add_argument('--threads', type=int, default=0, help='0: all cores')
    ap.add_argument('--time-layers', type=int, default=0,
                    help='time only the first K activation layers (each with the conv after it) of one pair '
                         'and its two samples, and scale to the depth and to n x n pairs')
    ap.add_argument('--time-hw', type=int, default=0,
                    help='with --time-layers: time on this grid and scale the entries by (hw / time_hw)^4')
    a = ap.parse_args()
    torch.set_num_threads(a.threads or os.cpu_count())
    dt = torch.float32 if a.f32 else torch.float64
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(a.n, a.hw, a.hw, a.c, generator=g, dtype=dt)
    x2 = torch.randn(a.n, a.hw, a.hw, a.c, generator=g, dtype=dt)
    layers = arch(a.arch)
    nact = sum(1 for L in layers if L[0] == 'act')
    with torch.no_grad():
        if not a.time_layers:
            kernel(layers, x1[:1], x2[:1], 1)   # warm-up
        if a.time_layers:
            # one pair and its two samples; n x n pairs have 2n samples' own passes
            # one pair and its two samples on a time_hw grid; n x n pairs have 2n samples' own
            # passes; the work of a layer is elementwise over the hw^4 entries
            ts, tp = Timer(0, a.time_layers), Timer(0, a.time_layers)
            h = a.time_hw or a.hw
            y1 = torch.randn(1, h, h, a.c, generator=g, dtype=dt)
            y2 = torch.randn(1, h, h, a.c, generator=g, dtype=dt)
            kernel(layers, y1, y2, 1, ts, tp)
            per_layer = (tp.total + ts.total / 2 * (2 * a.n) / (a.n * a.n)) * (a.hw / h) ** 4
            t = per_layer / a.time_layers * nact * a.n * a.n
            note = (f' (activation layers timed: {a.time_layers} of {nact}, on one pair and its two samples '
                    f'of {h}x{h}, scaled to {nact} layers, {a.hw}x{a.hw} and {a.n} x {a.n} pairs)')
        else:
            t0 = time.perf_counter()
            kernel(layers, x1, x2, a.batch)
            t = time.perf_counter() - t0
            note = ''
    print(f'threads={torch.get_num_threads()} ms_per_entry={1000 * t / (a.n * a.n):.3f}{note}')
