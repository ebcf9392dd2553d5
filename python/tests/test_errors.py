"""Failures raise nkern.Error subclasses by status, with the library's message; Ctrl-C stops a
long kernel computation cleanly."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nkern


def test_bad_spec_is_a_value_error_with_the_position():
    with pytest.raises(ValueError) as e:
        nkern.kernel("[conv(3) relu]*2 gapp dense", np.ones((2, 4, 4, 1)))
    assert isinstance(e.value, nkern.InputError) and isinstance(e.value, nkern.Error)
    assert e.value.status == 2 and "column" in str(e.value) and "gapp" in str(e.value)


def test_shape_errors():
    with pytest.raises(nkern.InputError, match="flatten"):
        nkern.kernel("flatten dense", np.ones((3, 5)))          # flatten needs a spatial input
    with pytest.raises(nkern.InputError, match="sample shapes differ"):
        nkern.kernel("dense relu dense", np.ones((3, 5)), np.ones((3, 4)))
    with pytest.raises(nkern.InputError, match="one axis"):
        nkern.kernel("dense relu dense", np.ones(5))


def test_non_finite_data_names_the_sample():
    x = np.ones((4, 3))
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="sample 2, element 1 is NaN"):
        nkern.kernel("dense relu dense", x)


def test_missing_file_is_an_os_error():
    with pytest.raises(OSError) as e:
        nkern.data.load("/nonexistent/x.npy")
    assert isinstance(e.value, nkern.FileError) and e.value.status == 4
    assert "/nonexistent/x.npy" in str(e.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="get"):
        nkern.kernel("dense", np.ones((2, 3)), get="ntk2")
    with pytest.raises(ValueError, match="precision"):
        nkern.kernel("dense", np.ones((2, 3)), precision="f16")
    with pytest.raises(ValueError, match="act"):
        nkern.theory.meanfield("relux")


def test_indefinite_kernel_without_regularization():
    k = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1
    with pytest.raises(nkern.InputError):
        nkern.predict(k, np.array([1.0, 0.0]), k)


SIGINT_CHILD = textwrap.dedent("""
    import signal, sys, time
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import nkern
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    x = np.random.default_rng(0).standard_normal((400, 16, 16, 1))
    print("start", flush=True)
    t0 = time.time()
    try:
        nkern.kernel("[conv(3) relu]*12 gap dense", x)       # minutes of work
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted %.3f" % (time.time() - t0), flush=True)
        K = nkern.kernel("dense relu dense", x[:3].reshape(3, -1))
        print("after", K.shape, flush=True)
""")


def test_sigint_stops_a_long_kernel(root):
    # OMP_WAIT_POLICY=active: OpenMP's idle threads spin until the process ends, so a library
    # unloaded at interpreter exit under them crashes the exit every time (the package keeps it)
    p = subprocess.Popen([sys.executable, "-c", SIGINT_CHILD, str(root / "python")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_WAIT_POLICY="active"))
    assert p.stdout.readline().strip() == "start"
    time.sleep(0.5)
    sent = time.time()
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("the computation did not stop within 60 s of SIGINT")
    stopped = time.time() - sent
    assert p.returncode == 0, err
    lines = out.split("\n")
    assert lines[0].startswith("interrupted"), out
    assert lines[1] == "after (3, 3)"          # the library is usable after the cancel
    print("stopped %.2f s after SIGINT" % stopped)
