"""Tests of the Python package against the CLI (bit for bit), numpy and closed forms.  The
package under test is the source tree's python/nkern with the source tree's build/."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
os.environ.pop("NKERN_LIB", None)  # the source tree's build/libnkern.so, not another one

import pytest  # noqa: E402

NKERN = ROOT / "build" / "nkern"
FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def cli():
    if not NKERN.exists():
        pytest.fail("build/nkern missing: run `make` first")
    return str(NKERN)


@pytest.fixture(scope="session")
def fashion500():
    """500 balanced Fashion-MNIST training images in [0, 1] and their labels."""
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("dataset-fashion-mnist not installed")
    import nkern
    x, y = nkern.data.fashion_mnist("train")
    x, y = nkern.data.subset(x, y, 500, balanced=True, seed=1)
    return x / 255.0, y
