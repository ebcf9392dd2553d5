#!/usr/bin/python3
"""test_reference.py -- nkern's `kernel` command against the independent numpy reference
tests/ref/nt_ref.py (full spatial covariance, one pair at a time; itself checked by
tests/test_ref_selfcheck.py).

For each architecture (a fixed list covering every layer type, plus architectures drawn at
random from a fixed seed) it writes random inputs as .npy, runs
    $NKERN kernel --arch SPEC --x1 A.npy [--x2 B.npy] --get both --out PREFIX
(NKERN defaults to build/nkern) for the symmetric (x1 only) and the x1/x2 forms, and compares
PREFIX.nngp.npy and PREFIX.ntk.npy with the reference.

Error measure, per entry: |nkern - ref| / max(|nkern|, |ref|, 1e-3 sqrt(k(x,x) k(x',x'))), i.e.
the relative error, except that entries smaller than 1/1000 of the Cauchy-Schwarz scale of their
row and column are measured against that scale.  Tolerance: 1e-9 when every activation has a
closed form (relu, erf, identity, leaky_relu, abrelu; sin, cos, exp, rbf, sign too, whose closed
forms the reference writes out itself), 1e-6 when a quadrature activation (tanh, gelu, sigmoid, softplus, swish) is present.
Prints one line per case and "test_reference: N passed, N failed"; exit 1 on failure.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'ref'))
import nt_ref as R  # noqa: E402
from nt_ref import act, avgpool, conv, dense, flatten, gap, repeat, res  # noqa: E402

TOL_CLOSED = 1e-9
TOL_QUAD = 1e-6

passed = failed = 0


def report(ok, line):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
    print(('ok   ' if ok else 'FAIL ') + line, flush=True)


def uses_quadrature(ir):
    for L in ir:
        if L['op'] == 'act' and L['fn'] in R.QUADRATURE:
            return True
        if L['op'] in ('res', 'repeat') and uses_quadrature(L['body']):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Fixed cases: (name, ir, globals, input shape without N, N1, N2)

A = act
G = dict  # global defaults
FIXED = [
    # MLPs
    ('mlp-relu', [dense(), A('relu'), dense()], G(), (7,), 5, 3),
    ('mlp-relu-deep-globals', [dense(), A('relu'), dense(), A('relu'), dense(), A('relu'),
                               dense()], G(w=1.4, b=0.1), (6,), 5, 3),
    ('mlp-erf-perlayer', [dense(w=1.2, b=0.3), A('erf'), dense(w=0.9, b=0.05), A('erf'),
                          dense(w=1.1)], G(), (7,), 5, 3),
    ('mlp-abrelu', [dense(b=0.2), A('abrelu', a=-0.5, b=1.5), dense(), A('abrelu', a=0.3, b=-1.1),
                    dense()], G(), (6,), 4, 3),
    ('mlp-leaky-identity', [dense(), A('leaky_relu', alpha=0.1), dense(w=0.7), A('identity'),
                            dense(), A('leaky_relu', alpha=-0.25), dense()], G(b=0.05), (5,), 4, 3),
    ('mlp-sin', [dense(w=1.3, b=0.2), A('sin'), dense(), A('sin'), dense()], G(), (6,), 4, 3),
    ('mlp-tanh', [dense(), A('tanh'), dense(), A('tanh'), dense()], G(w=1.5, b=0.1), (6,), 4, 3),
    # the same network with nkern's quadrature order raised from its default by a spec token
    ('mlp-tanh-quad300', [dense(), A('tanh'), dense(), A('tanh'), dense()],
     G(w=1.5, b=0.1, quad=300), (6,), 4, 3),
    ('mlp-gelu', [dense(), A('gelu'), dense(), A('gelu'), dense()], G(b=0.1), (6,), 4, 3),
    ('mlp-sigmoid', [dense(w=2.0), A('sigmoid'), dense(), A('sigmoid'), dense()], G(), (6,), 4, 3),
    ('mlp-softplus', [dense(), A('softplus'), dense()], G(b=0.3), (6,), 4, 3),
    ('mlp-swish', [dense(), A('swish'), dense(w=1.2), A('swish'), dense()], G(), (6,), 4, 3),
    ('mlp-mixed-acts', [dense(), A('relu'), dense(), A('erf'), dense(), A('tanh'), dense(),
                        A('gelu'), dense()], G(w=1.2, b=0.1), (5,), 4, 3),
    ('mlp-standard', [dense(), A('relu'), dense(), A('relu'), dense()],
     G(param='standard', width=64, b=0.1), (6,), 4, 3),
    ('mlp-standard-nobias-widths', [dense(width=32), A('erf'), dense(width=128, b=0.2), A('relu'),
                                    dense()], G(param='standard', w=1.3), (6,), 4, 3),
    ('mlp-repeat', [repeat(3, dense(), A('relu')), dense()], G(w=1.41, b=0.1), (6,), 4, 3),
    ('mlp-res', [dense(), res(A('relu'), dense(b=0.1)), A('erf'), dense()], G(), (6,), 4, 3),
    # 2-D CNNs
    ('cnn-flatten', [conv(3), A('relu'), conv(3), A('relu'), flatten(), dense()], G(),
     (5, 5, 2), 3, 2),
    ('cnn-gap', [conv(3), A('relu'), conv(3), A('relu'), gap(), dense()], G(w=1.3, b=0.1),
     (5, 5, 2), 3, 2),
    ('cnn-strided-valid-circular', [conv(3, stride=2, pad='valid'), A('relu'),
                                    conv(2, pad='circular', w=1.2, b=0.05), A('erf'), gap(),
                                    dense()], G(), (7, 6, 3), 3, 2),
    ('cnn-stride2-same', [conv(3, stride=2), A('relu'), conv(4, stride=2, b=0.1), A('relu'),
                          flatten(), dense()], G(), (7, 8, 2), 3, 2),
    ('cnn-rect-filter', [conv((3, 5), b=0.1), A('relu'), conv((2, 1), pad='valid'), A('erf'),
                         flatten(), dense()], G(), (4, 6, 2), 3, 2),
    ('cnn-avgpool', [conv(3), A('relu'), avgpool(2), conv(3), A('relu'), gap(), dense()],
     G(b=0.1), (6, 6, 2), 3, 2),
    # stride-1 circular stacks read out by a flatten: the torus path (src/engine/torus.c)
    ('torus-relu-erf-rect', [conv(3, pad='circular', b=0.1), A('relu'), conv((3, 5), pad='circular'),
                             A('erf'), conv(1, w=1.2), A('relu'), flatten(), dense(b=0.1), A('relu'),
                             dense()], G(w=1.3), (5, 6, 3), 3, 2),
    ('torus-even-filter-standard', [conv(2, pad='circular', b=0.2), A('leaky_relu', alpha=0.1),
                                    conv(4, pad='circular'), A('relu'), flatten(), dense()],
     G(param='standard', width=16), (4, 7, 2), 3, 2),
    ('cnn-avgpool-stride1-flatten', [conv(3, pad='circular', w=1.2, b=0.05), A('relu'),
                                     avgpool(2, stride=1), flatten(), dense()], G(),
     (5, 4, 2), 3, 2),
    ('cnn-avgpool-same-circular', [conv((2, 3), stride=2, pad='circular', b=0.1), A('relu'),
                                   avgpool(3, stride=2, pad='same'), conv(3), A('erf'),
                                   avgpool(2, pad='circular'), flatten(), dense()], G(),
     (8, 7, 2), 3, 2),
    ('cnn-res', [conv(3), repeat(2, res(A('relu'), conv(3), A('relu'), conv(3))), A('relu'),
                 gap(), dense()], G(w=1.2, b=0.1), (4, 4, 2), 3, 2),
    # smooth activations in the plane engine: the Mehler form (tanh, sigmoid, softplus, swish)
    # and the vectorized closed forms (gelu, erf), against the reference's quadrature
    ('cnn-gap-tanh-sigmoid', [conv(3), A('tanh'), conv(3), A('sigmoid'), gap(), dense()],
     G(w=1.4, b=0.1), (5, 5, 2), 3, 2),
    ('cnn-gap-softplus-swish', [conv(3), A('softplus'), conv(3), A('swish'), gap(), dense()],
     G(w=1.2, b=0.1), (4, 5, 2), 3, 2),
    ('cnn-gap-gelu-erf', [conv(3), A('gelu'), conv(3), A('erf'), gap(), dense()],
     G(w=1.3, b=0.1), (4, 3, 2), 3, 2),
    # the plane engine's levels: Myrtle's pools, a strided conv between residual blocks
    ('myrtle5-8x8', [repeat(2, conv(3), A('relu')), avgpool(2), conv(3), A('relu'), avgpool(2),
                     conv(3), A('relu'), avgpool(2), flatten(), dense()], G(w=1.41421356),
     (8, 8, 3), 3, 2),
    ('resnet-stride', [conv(3), A('relu'), res(conv(3), A('relu'), conv(3)), A('relu'),
                       conv(3, stride=2), A('relu'), res(conv(3), A('relu'), conv(3)), A('relu'),
                       gap(), dense()], G(w=1.3, b=0.1), (6, 7, 2), 3, 2),
    ('cnn-dense-per-position', [conv(3), A('relu'), dense(b=0.2), A('relu'), gap(), dense()],
     G(), (4, 5, 3), 3, 2),
    ('cnn-readout-mlp', [conv(2), A('abrelu', a=-0.2, b=1.3), flatten(), dense(), A('relu'),
                         dense()], G(b=0.1), (4, 4, 2), 3, 2),
    ('cnn-standard-flatten', [conv(3), A('relu'), conv(3, stride=2), A('relu'), flatten(),
                              dense(width=32), A('relu'), dense()],
     G(param='standard', width=16, b=0.1), (5, 5, 2), 3, 2),
    ('cnn-standard-gap-res', [conv(3), res(A('relu'), conv(3, b=0.2)), A('erf'), gap(), dense()],
     G(param='standard', width=8, w=1.3), (4, 4, 3), 3, 2),
    ('cnn-standard-avgpool', [conv(2, width=24), A('relu'), avgpool(2, stride=1), conv(3),
                              A('relu'), gap(), dense()],
     G(param='standard', width=12, b=0.05), (4, 4, 2), 3, 2),
    ('cnn-gelu-gap', [conv(3), A('gelu'), gap(), dense()], G(b=0.1), (3, 3, 2), 3, 2),
    ('cnn-swish-flatten', [conv(3), A('swish'), conv(3), A('swish'), flatten(), dense()], G(),
     (3, 3, 2), 3, 2),
    # layers applied straight to the input
    ('input-flatten-mlp', [flatten(), dense(b=0.1), A('relu'), dense()], G(), (3, 4, 2), 4, 3),
    ('input-gap', [gap(), dense(), A('erf'), dense()], G(w=1.2), (4, 3, 3), 4, 3),
    ('input-avgpool-dense-first', [avgpool(2), dense(b=0.1), A('relu'), conv(3), A('relu'),
                                   gap(), dense()], G(), (6, 4, 2), 3, 2),
    # float32 inputs (the reference uses the same float32 values)
    ('float32-input-cnn', [conv(3, b=0.1), A('relu'), conv(3, stride=2), A('erf'), flatten(),
                           dense()], G(), (5, 6, 3), 3, 2),
    # 1-D CNNs
    ('conv1d-flatten', [conv(3), A('relu'), conv(3, stride=2), A('relu'), flatten(), dense()],
     G(b=0.1), (8, 3), 4, 3),
    ('torus-1d', [conv(5, pad='circular', b=0.1), A('relu'), conv(3, pad='circular'), A('sin'),
                  flatten(), dense()], G(), (7, 2), 4, 3),
    ('conv1d-circular-avgpool', [conv(5, pad='circular'), A('erf'), avgpool(2, stride=1),
                                 conv(2, pad='valid'), A('relu'), gap(), dense()], G(w=1.3),
     (8, 2), 4, 3),
    ('conv1d-tanh', [conv(3), A('tanh'), conv(3), A('tanh'), gap(), dense()], G(b=0.1),
     (6, 2), 3, 2),
    ('conv1d-sigmoid-softplus', [conv(2), A('sigmoid'), conv(3, stride=2), A('softplus'),
                                 flatten(), dense()], G(), (6, 2), 3, 2),
    ('conv1d-res-standard', [conv(3), repeat(2, res(A('relu'), conv(3))), A('relu'), flatten(),
                             dense()], G(param='standard', width=10, b=0.1), (7, 2), 3, 2),
    ('conv1d-sin-leaky', [conv(4, stride=3, pad='valid'), A('sin'), conv(2, pad='circular'),
                          A('leaky_relu', alpha=0.2), gap(), dense()], G(), (11, 2), 3, 2),
    # cos, exp, rbf(gamma), sign: closed forms in nkern (the plane engine's generic step for the
    # CNNs, the MLP tiles for the MLPs), written out independently in the reference
    ('mlp-cos-exp', [dense(w=1.2, b=0.1), A('cos'), dense(w=0.8), A('exp'), dense()], G(),
     (6,), 4, 3),
    ('mlp-rbf-sign', [dense(), A('rbf', gamma=0.5), dense(b=0.1), A('sign'), dense(), A('rbf'),
                      dense()], G(), (6,), 4, 3),
    ('cnn-gap-cos-rbf', [conv(3), A('cos'), conv(3), A('rbf', gamma=2.0), gap(), dense()],
     G(w=1.3, b=0.1), (5, 5, 2), 3, 2),
    ('cnn-flatten-sign-exp', [conv(3), A('sign'), conv(2, w=0.7), A('exp'), flatten(), dense()],
     G(b=0.1), (4, 5, 2), 3, 2),
    ('conv1d-res-sign-cos', [conv(3), res(A('sign'), conv(3)), A('cos'), avgpool(2), gap(),
                             dense()], G(w=1.2), (8, 2), 3, 2),
]


# ---------------------------------------------------------------------------------------------
# Random architectures from a fixed seed.

def random_case(rng, k):
    ACTS_CLOSED = [('relu', {}), ('erf', {}), ('identity', {}),
                   ('leaky_relu', {'alpha': 0.1}), ('abrelu', {'a': -0.5, 'b': 1.5}),
                   ('sin', {})]
    ACTS_QUAD = [('tanh', {}), ('gelu', {}), ('swish', {}), ('softplus', {}), ('sigmoid', {})]
    WS = [None, 0.8, 1.2, 1.5]
    BS = [None, 0.0, 0.1, 0.3]
    quad = rng.random() < 0.25
    # quadrature over full P x P covariances is slow in the reference: MLPs or short 1-D only
    dims = int(rng.integers(0, 2 if quad else 3))

    def rand_act():
        if quad and rng.random() < 0.5:
            fn, kw = ACTS_QUAD[rng.integers(len(ACTS_QUAD))]
        else:
            fn, kw = ACTS_CLOSED[rng.integers(len(ACTS_CLOSED))]
        return A(fn, **kw)

    def wb():
        out = {}
        w, b = WS[rng.integers(len(WS))], BS[rng.integers(len(BS))]
        if w is not None:
            out['w'] = w
        if b is not None:
            out['b'] = b
        return out

    param = 'standard' if rng.random() < 0.3 else None
    glob = G()
    if param:
        glob['param'] = param
        glob['width'] = int(rng.choice([4, 16, 64]))
    if rng.random() < 0.5:
        glob['w'] = float(rng.choice([1.0, 1.3]))
        glob['b'] = float(rng.choice([0.0, 0.05, 0.2]))
    ir = []
    if dims == 0:
        D = int(rng.integers(3, 9))
        shape = (D,)
        for _ in range(int(rng.integers(1, 4))):
            ir += [dense(**wb()), rand_act()]
        ir.append(dense(**wb()))
        n1, n2 = 5, 3
    else:
        size = [int(rng.integers(4, 7 if dims == 2 else 10)) for _ in range(dims)]
        C = int(rng.integers(1, 4))
        shape = tuple(size) + (C,)
        if quad:
            size = [min(s, 5) for s in size]
            shape = tuple(size) + (C,)
        nconv = int(rng.integers(1, 4))
        for i in range(nconv):
            f = int(rng.integers(1, 4))
            pad = ['same', 'valid', 'circular'][rng.integers(3)]
            s = int(rng.choice([1, 1, 2]))
            if pad == 'valid' and min(size) < f:
                pad = 'same'
            kw = wb()
            L = conv(f, **kw)
            if s != 1:
                L['stride'] = s
            if pad != 'same':
                L['pad'] = pad
            ir += [L, rand_act()]
            size = [((n - f) // s + 1) if pad == 'valid' else -(-n // s) for n in size]
            if rng.random() < 0.3 and min(size) >= 2:
                # a residual block that keeps the shape
                ir.append(res(conv(int(rng.integers(1, 4)), **wb()), rand_act()))
            if rng.random() < 0.2 and min(size) >= 2:
                if rng.random() < 0.5:
                    ir.append(avgpool(2, stride=1))
                    size = [n - 1 for n in size]
                else:  # windows side by side: a step down between levels of the plane engine
                    ir.append(avgpool(2))
                    size = [n // 2 for n in size]
        ir.append(gap() if rng.random() < 0.5 else flatten())
        if rng.random() < 0.4:
            ir += [dense(**wb()), rand_act()]
        ir.append(dense(**wb()))
        n1, n2 = 3, 2
    return ('random-%d' % k, ir, glob, shape, n1, n2)


# ---------------------------------------------------------------------------------------------

def errs(a, b, d1, d2):
    scale = 1e-3 * np.sqrt(np.abs(np.outer(d1, d2)))
    den = np.maximum(np.maximum(np.abs(a), np.abs(b)), scale)
    den = np.where(den > 0, den, 1.0)
    return np.abs(a - b) / den


def run_nkern(nkern, spec, x1, x2, prefix):
    cmd = [nkern, 'kernel', '--arch', spec, '--x1', x1]
    if x2:
        cmd += ['--x2', x2]
    cmd += ['--get', 'both', '--out', prefix, '--quiet']
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        return None, None, 'exit %d: %s' % (p.returncode, (p.stderr or p.stdout).strip()[:300])
    try:
        return np.load(prefix + '.nngp.npy'), np.load(prefix + '.ntk.npy'), ''
    except Exception as e:  # noqa: BLE001
        return None, None, 'cannot read output: %s' % e


def run_case(nkern, tmp, idx, case, rng, verbose_fail=True):
    name, ir, glob, shape, n1, n2 = case
    spec = R.render_spec(ir, **glob)
    tol = TOL_QUAD if uses_quadrature(ir) else TOL_CLOSED
    X1 = rng.standard_normal((n1,) + shape)
    X2 = rng.standard_normal((n2,) + shape)
    if name.startswith('random'):  # vary the input scale
        scale = [0.5, 1.0, 2.0][idx % 3]
        X1 *= scale
        X2 *= scale
    if name.startswith('float32'):
        X1 = X1.astype(np.float32)
        X2 = X2.astype(np.float32)
    if name.startswith('dup'):
        X2[0] = X1[1]
    f1 = os.path.join(tmp, 'c%d_x1.npy' % idx)
    f2 = os.path.join(tmp, 'c%d_x2.npy' % idx)
    np.save(f1, X1)
    np.save(f2, X2)
    t = time.time()
    defaults = dict(param=glob.get('param', 'ntk'), w=glob.get('w', 1.0), b=glob.get('b', 0.0),
                    width=glob.get('width', 1), quad_order=R.QUAD_ORDER)
    s1 = [R.self_record(ir, x, defaults) for x in X1]
    s2 = [R.self_record(ir, x, defaults) for x in X2]
    ref = {}
    for form, XA, XB, SA, SB in (('sym', X1, X1, s1, s1), ('x1x2', X1, X2, s1, s2)):
        K = np.zeros((len(XA), len(XB)))
        T = np.zeros_like(K)
        for i in range(len(XA)):
            for j in range(len(XB)):
                if form == 'sym' and j < i:
                    K[i, j], T[i, j] = K[j, i], T[j, i]
                    continue
                K[i, j], T[i, j] = R.pair_kernel(ir, XA[i], XB[j], SA[i][0], SB[j][0], defaults)
        ref[form] = (K, T, np.array([s[1] for s in SA]), np.array([s[1] for s in SB]),
                     np.array([s[2] for s in SA]), np.array([s[2] for s in SB]))
    t_ref = time.time() - t
    for form in ('sym', 'x1x2'):
        K, T, dK1, dK2, dT1, dT2 = ref[form]
        prefix = os.path.join(tmp, 'c%d_%s' % (idx, form))
        t = time.time()
        nn, nt, msg = run_nkern(nkern, spec, f1, f2 if form == 'x1x2' else None, prefix)
        t_nk = time.time() - t
        label = '%-28s %-4s %-5s N=%dx%d in%s  [%s]' % (
            name, form, 'quad' if tol == TOL_QUAD else 'exact', K.shape[0], K.shape[1],
            'x'.join(map(str, shape)), spec)
        if nn is None:
            report(False, '%s: nkern failed: %s' % (label, msg))
            continue
        if nn.shape != K.shape or nt.shape != T.shape:
            report(False, '%s: shapes nngp %s ntk %s, want %s' % (label, nn.shape, nt.shape,
                                                                   K.shape))
            continue
        if not (np.isfinite(nn).all() and np.isfinite(nt).all()):
            report(False, '%s: non-finite output' % label)
            continue
        eK = errs(nn, K, dK1, dK2)
        eT = errs(nt, T, dT1, dT2)
        ok = eK.max() <= tol and eT.max() <= tol
        line = '%s: nngp err %.1e ntk err %.1e (tol %.0e; ref %.2fs, nkern %.2fs)' % (
            label, eK.max(), eT.max(), tol, t_ref / 2, t_nk)
        if not ok and verbose_fail:
            for nm, e, a, b in (('nngp', eK, nn, K), ('ntk', eT, nt, T)):
                if e.max() > tol:
                    i, j = np.unravel_index(np.argmax(e), e.shape)
                    line += '\n       %s worst [%d,%d]: nkern %.17g ref %.17g (%d of %d entries over tol)' \
                        % (nm, i, j, a[i, j], b[i, j], int((e > tol).sum()), e.size)
        report(ok, line)


def main():
    nkern = os.environ.get('NKERN', 'build/nkern')
    t0 = time.time()
    if not (os.path.isfile(nkern) and os.access(nkern, os.X_OK)):
        print('nkern binary %r not found (set NKERN or build it with make build/nkern)' % nkern)
        print('test_reference: 0 passed, 1 failed')
        return 1
    nkern = os.path.abspath(nkern)
    rng = np.random.default_rng(20261124)
    cases = list(FIXED)
    # a sample of x2 identical to a sample of x1: the cross path meets rho = 1 exactly
    cases.append(('dup-sample-relu-cnn', [conv(3), A('relu'), conv(3), A('relu'), flatten(),
                                          dense(), A('relu'), dense()], G(b=0.1),
                  (4, 4, 2), 3, 2))
    cases.append(('dup-sample-relu-torus', [conv(3, pad='circular'), A('relu'), conv(3, pad='circular'),
                                            A('relu'), flatten(), dense()], G(b=0.1), (4, 5, 2), 3, 2))
    cases.append(('dup-sample-erf-mlp', [dense(), A('erf'), dense(), A('relu'), dense()],
                  G(w=1.2), (5,), 3, 2))
    case_rng = np.random.default_rng(7)
    cases += [random_case(case_rng, k) for k in range(20)]
    tmp = tempfile.mkdtemp(prefix='nkern_ref_')
    try:
        for idx, case in enumerate(cases):
            try:
                run_case(nkern, tmp, idx, case, rng)
            except Exception as e:  # noqa: BLE001 -- a broken case must not stop the others
                report(False, '%s: exception %r' % (case[0], e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print('total %.1f s' % (time.time() - t0))
    print('test_reference: %d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
