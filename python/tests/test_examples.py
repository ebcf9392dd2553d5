"""examples/*.py run at small sizes, and what they print holds."""
import re
import subprocess
import sys

import pytest


def run(root, tmp_path, name, *args):
    env = {"PYTHONPATH": str(root / "python"), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, str(root / "examples" / name)] + [str(a) for a in args], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_examples_are_all_tested(root):
    assert sorted(p.name for p in (root / "examples").glob("*.py")) == \
        ["depth_phases.py", "fashion_mnist_classifier.py", "spectrum_plot.py"]


def test_classifier(root, tmp_path, fashion500):
    out = run(root, tmp_path, "fashion_mnist_classifier.py", 300, 200)
    acc = float(re.search(r"test accuracy ([0-9.]+)", out).group(1))
    assert acc > 0.6, out    # chance is 0.1


def test_spectrum_plot(root, tmp_path, fashion500):
    out = run(root, tmp_path, "spectrum_plot.py", "s.png", 400, 120)
    png = (tmp_path / "s.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
    # the top eigenvalue of K/n approaches mu_0 (1/sqrt(n) fluctuations: within 10% at n = 400)
    emp, ex = (float(re.search(r"%s \[([0-9.e-]+)" % w, out).group(1)) for w in ("empirical", "exact"))
    assert abs(emp - ex) < 0.1 * ex, out


def test_depth_phases(root, tmp_path, fashion500):
    out = run(root, tmp_path, "depth_phases.py", 64, "1,64")
    rows = [line.split() for line in out.splitlines()[1:]]
    chaotic_deep = [r for r in rows if r[0] == "chaotic" and r[3] == "64"][0]
    ordered_deep = [r for r in rows if r[0] == "ordered" and r[3] == "64"][0]
    # chaotic: condition -> 1 and chance accuracy at depth 64; ordered: still learns
    assert float(chaotic_deep[5]) < 1.01 and float(chaotic_deep[6]) < 0.3, out
    assert float(ordered_deep[5]) > 100 and float(ordered_deep[6]) > 0.5, out
