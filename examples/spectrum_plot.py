"""Kernel spectra, plotted with matplotlib (a PNG; no display needed).

Left: the NTK of a ReLU MLP on n points uniform on the sphere S^2.  The eigenvalues of K / n
approach the exact eigenvalues mu_k of the kernel on the sphere, each repeated N(3, k) = 2k + 1
times (Nystrom), which decay like k^-3 (Bietti & Mairal 2019).
Right: NTK Gram spectra on Fashion-MNIST images for an MLP and a CNN, with their fitted
power-law decay lambda_i ~ i^-alpha.
Usage: python3 spectrum_plot.py [OUT.png [N_SPHERE [N_IMAGES]]]"""
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import nkern  # noqa: E402

args = sys.argv[1:] + [None] * 3
out, n_sphere, n_images = args[0] or "spectrum.png", int(args[1] or 1500), int(args[2] or 400)
spec = "dense relu dense relu dense"

# points uniform on S^2 scaled to |x|^2 = 3, so that nkern's K0 = <x, x'> / 3 is the cosine
z = np.random.default_rng(0).standard_normal((n_sphere, 3))
x = np.sqrt(3) * z / np.linalg.norm(z, axis=1, keepdims=True)
empirical = nkern.spectrum(nkern.kernel(spec, x) / n_sphere).eigenvalues
mu, mult = nkern.theory.sphere_spectrum(spec, 3, kmax=60, get="ntk")
exact = np.sort(np.repeat(mu, mult.astype(int)))[::-1]
top = min(len(exact), len(empirical))
print("sphere: largest eigenvalues, empirical %s vs exact %s" % (np.round(empirical[:4], 4), np.round(exact[:4], 4)))

images, _ = nkern.data.fashion_mnist("test")
images = nkern.data.standardize(images[:n_images] / 255)
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
left.loglog(np.arange(1, top + 1), exact[:top], "k-", lw=2, label="exact $\\mu_k$, multiplicity $2k+1$")
left.loglog(np.arange(1, top + 1), empirical[:top], "o", ms=3, alpha=0.6, label="eigenvalues of $K/n$, n = %d" % n_sphere)
left.set(title="ReLU MLP NTK on $S^2$", xlabel="rank", ylabel="eigenvalue")
left.legend()
for name, arch in [("MLP", "flatten [dense relu]*2 dense"), ("CNN", "avgpool(2) [conv(3) relu]*2 flatten dense")]:
    s = nkern.spectrum(nkern.kernel(arch, images), fit=(10, n_images // 2))
    rank = np.arange(1, n_images + 1)
    right.loglog(rank, s.eigenvalues, label="%s, $\\alpha$ = %.2f" % (name, s.alpha))
    print("%s on Fashion-MNIST: lambda_max %.4g, condition %.3g, decay alpha %.3f" % (name, s.stats["lmax"], s.stats["cond"], s.alpha))
right.set(title="NTK Gram spectra, %d Fashion-MNIST images" % n_images, xlabel="rank i", ylabel="$\\lambda_i$")
right.legend()
fig.tight_layout()
fig.savefig(out, dpi=100)
print("wrote", out)
