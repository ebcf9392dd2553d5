"""Depth in the ordered and the chaotic phase (Schoenholz et al. 2017; Xiao, Pennington,
Schoenholz 2020): the NTK of a deep erf MLP on Fashion-MNIST, its condition number, and the
test accuracy of P(Theta) = Theta_test,train Theta^-1 Y (the trained infinite ensemble).

Ordered (chi_1 < 1): with depth the bulk of the spectrum collapses, the condition number grows.
Chaotic (chi_1 > 1): the NTK tends to a multiple of the identity plus a constant, the
condition number tends to 1, and the predictions lose the data: accuracy falls to chance.
Usage: python3 depth_phases.py [N [DEPTHS]]   (N training and N test images; DEPTHS e.g. 1,4,16,64)"""
import sys

import numpy as np

import nkern

args = sys.argv[1:] + [None] * 2
n = int(args[0] or 256)
depths = [int(d) for d in (args[1] or "1,4,16,64").split(",")]
x, y = nkern.data.subset(*nkern.data.fashion_mnist("train"), 2 * n, balanced=True, seed=0)
# per image: zero mean and |x|^2 = dim, so every input has K0(x, x) = 1
x = nkern.data.standardize(x.reshape(2 * n, -1) / 255)
targets = nkern.one_hot(y[:n])

print("%-8s %5s %7s %6s %12s %12s %9s" % ("phase", "sw2", "chi_1", "depth", "lambda_max", "condition", "accuracy"))
for sw2, sb2 in [(1.0, 0.05), (3.0, 0.05)]:
    mf = nkern.theory.meanfield("erf", sw2, sb2)
    for depth in depths:
        spec = "w=%.17g b=%.17g [dense erf]*%d dense" % (np.sqrt(sw2), np.sqrt(sb2), depth)
        ntk = nkern.kernel(spec, x[:n])
        ntk_test = nkern.kernel(spec, x[n:], x[:n])
        s = nkern.spectrum(ntk)
        pred = nkern.predict(None, targets, None, ntk_train=ntk, ntk_test=ntk_test, reg=1e-10)
        acc = np.mean(pred.argmax(1) == y[n:])
        print("%-8s %5.2f %7.4f %6d %12.4g %12.4g %9.4f" % (mf["phase"], sw2, mf["chi1"], depth, s.stats["lmax"],
                                                            s.stats["cond"], acc))
