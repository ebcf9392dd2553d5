"""nkern.kernel and nkern.Arch against `nkern kernel` / `nkern arch` (bit for bit)."""
import subprocess
import warnings

import numpy as np
import pytest

import nkern
from nkern import _lib

CASES = [
    # spec, sample shape, dtype of the stored data, get, precision, with x2
    ("w=1.41 b=0.1 [dense relu]*3 dense", (12,), np.float64, "ntk", "f64", False),
    ("w=1.41 b=0.1 [dense relu]*3 dense", (12,), np.float32, "nngp", "f64", True),
    ("[conv(3) relu]*2 gap dense", (6, 6, 2), np.float64, "both", "f64", False),
    ("[conv(3) relu]*2 gap dense", (6, 6, 2), np.float32, "both", "f32", True),
    ("b=0.2 conv(3,stride=2,pad=valid) erf flatten dense", (7, 7, 1), np.float64, "ntk", "f64", True),
    ("res(conv(3) relu conv(3)) tanh gap dense", (8, 3), np.float64, "nngp", "f64", False),
]


def run_cli(cli, args, cwd):
    r = subprocess.run([cli] + args, cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.parametrize("spec,shape,dtype,get,precision,cross", CASES)
def test_kernel_bit_identical_to_cli(tmp_path, cli, spec, shape, dtype, get, precision, cross):
    rng = np.random.default_rng(len(spec))
    x1 = rng.standard_normal((9,) + shape).astype(dtype)
    x2 = rng.standard_normal((5,) + shape).astype(dtype)
    np.save(tmp_path / "x1.npy", x1)
    np.save(tmp_path / "x2.npy", x2)
    args = ["kernel", "--arch", spec, "--x1", "x1.npy", "--get", get, "--out", "K.npy", "--quiet",
            "--precision", precision, "--threads", "2"]
    if cross:
        args += ["--x2", "x2.npy"]
    run_cli(cli, args, tmp_path)
    got = nkern.kernel(spec, x1, x2 if cross else None, get=get, precision=precision, threads=2)
    if get == "both":
        want = (np.load(tmp_path / "K.nngp.npy"), np.load(tmp_path / "K.ntk.npy"))
    else:
        got, want = (got,), (np.load(tmp_path / "K.npy"),)
    for g, w in zip(got, want):
        assert g.dtype == np.float64 and g.shape == w.shape
        assert np.array_equal(g, w), "max difference %g" % np.max(np.abs(g - w))


def test_relu_mlp_against_closed_form():
    # one hidden relu layer, NTK parameterization, no bias: NNGP = |x||x'|/(2 pi D) (sin t + (pi - t) cos t)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5))
    K = nkern.kernel("dense relu dense", x, get="nngp")
    g = x @ x.T / 5
    n = np.sqrt(np.diag(g))
    c = np.clip(g / np.outer(n, n), -1, 1)
    t = np.arccos(c)
    ref = np.outer(n, n) / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t))
    assert np.max(np.abs(K - ref)) <= 1e-13 * np.max(np.abs(ref))


def test_float64_input_is_not_copied_and_outputs_are_owned():
    x = np.random.default_rng(0).standard_normal((4, 3))
    assert _lib.InArray(x).array is x               # float64 C order: used in place
    assert _lib.InArray(x.astype(np.float32)).array is not x
    assert _lib.InArray(np.asfortranarray(np.ones((3, 2)))).array.flags.c_contiguous
    K = nkern.kernel("dense relu dense", x)
    assert K.base is not None and K.flags.writeable  # wraps the library's buffer, no copy
    K[0, 0] = 7.0                                    # and is an ordinary writable array
    del K


def test_arch_describe_matches_cli(cli):
    spec = "w=1.41 b=0.1 avgpool(4) [conv(3) relu]*3 gap dense"
    r = subprocess.run([cli, "arch", spec, "--input", "28x28x1", "--n", "1000"], capture_output=True, text=True)
    assert r.returncode == 0
    # the machine's memory line is the same call: the library's text is the CLI's first part
    # (the CLI adds its time estimate, nkern.Arch.seconds)
    text = nkern.Arch(spec).describe((28, 28, 1), 1000)
    assert text and r.stdout.startswith(text)
    assert nkern.Arch(spec).describe("28x28x1", 1000) == text
    assert "estimated wall time" in r.stdout[len(text):]
    one, two = (nkern.Arch(spec).seconds((28, 28, 1), 1000, threads=t) for t in (1, 2))
    assert one > 0 and abs(one / two - 2) < 1e-12   # one core's seconds, divided by the threads
    # translations: the torus path computes each entry at the 9 differences of shifts by 0..1
    tor = nkern.Arch("w=1.41 b=0.1 [conv(3,pad=circular) relu]*4 flatten dense")
    plain, shifted = (tor.seconds((28, 28, 1), 1000, shift=s) for s in (0, 1))
    assert plain > 0 and 8.7 < shifted / plain < 9.1
    cost = nkern.Arch(spec).cost((28, 28, 1), 1000)
    assert cost["flops"] > 0 and cost["bytes"] > 0
    # float32: the CLI's text, and less memory where the engine keeps its states in 4 bytes
    tanh = nkern.Arch("[conv(3) tanh]*4 gap dense")
    r = subprocess.run([cli, "arch", tanh.spec, "--input", "20x20x1", "--n", "40", "--precision", "f32"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith(tanh.describe((20, 20, 1), 40, precision="f32"))
    b64, b32 = (tanh.cost((20, 20, 1), 40, precision=p)["bytes"] for p in ("f64", "f32"))
    assert b32 < 0.7 * b64
    with pytest.raises(nkern.InputError, match="precision"):
        tanh.cost((20, 20, 1), 40, precision="f16")


def test_arch_options_equal_spec_defaults():
    x = np.random.default_rng(1).standard_normal((5, 4))
    a = nkern.kernel(nkern.Arch("[dense erf]*2 dense", w_std=1.3, b_std=0.2), x)
    b = nkern.kernel("w=1.3 b=0.2 [dense erf]*2 dense", x)
    assert np.array_equal(a, b)


def test_progress_is_reported_and_can_cancel():
    x = np.random.default_rng(2).standard_normal((40, 5, 5, 1))
    seen = []
    nkern.kernel("conv(3) relu gap dense", x, threads=1, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] == 40 * 41 // 2
    with pytest.raises(nkern.RunError, match="cancel"):
        nkern.kernel("conv(3) relu gap dense", x, threads=1, progress=lambda d, t: True)


@pytest.mark.parametrize("augment,flip,shift", [("shift:1", 0, 1), ("flip", 1, 0), ("flip,shift:1", 1, 1)])
def test_augmented_kernel_is_the_average_over_transformed_data(augment, flip, shift):
    """augment= against its definition, K_A(x, x') = |A|^-2 sum over u, v in A of K(u x, v x'),
    with the transforms applied to the data here (numpy) and plain kernels."""
    spec = "b=0.1 [conv(3,pad=circular) relu]*2 flatten dense"
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((5, 5, 6, 2)), rng.standard_normal((4, 5, 6, 2))

    def moves(x):
        for a in range(flip + 1):
            for dy in range(shift + 1):
                for dx in range(shift + 1):
                    # mirror first, then translate (the library's A)
                    yield np.roll(x[:, :, ::-1] if a else x, (dy, dx), axis=(1, 2))

    for second in (None, x2):
        got = nkern.kernel(spec, x1, second, get="ntk", augment=augment)
        b = x1 if second is None else second
        terms = [nkern.kernel(spec, u, v, get="ntk") for u in moves(x1) for v in moves(b)]
        want = np.mean(terms, axis=0)
        assert np.max(np.abs(got - want)) <= 1e-13 * np.max(np.abs(want))


def test_augment_refused_with_the_fix():
    with pytest.raises(nkern.InputError, match="shift:S"):
        nkern.kernel("fc(2)", np.zeros((2, 4, 4, 1)), augment="shift:9")
    with pytest.raises(nkern.InputError, match="circular"):
        nkern.kernel("conv(3) relu gap dense", np.ones((2, 4, 4, 1)), augment="shift:1")


def test_raw_scale_through_tanh_warns_and_names_the_fix():
    # the reach of the stored series shrinks as the inputs' scale grows, and is whole at scale 1
    arch = nkern.Arch("dense tanh dense")
    reach = [arch.mehler_reach(4, ms)[0] for ms in (1, 10, 100, 1e4)]
    assert reach[0] == 1 and arch.mehler_reach(4, 1)[1] is None
    assert all(b <= a for a, b in zip(reach, reach[1:])) and reach[-1] < 0.9
    assert arch.mehler_reach(4, 1e4)[1] == 1   # op 1 (0-based): the tanh
    raw = np.random.default_rng(0).integers(0, 256, (2, 4)).astype(np.float64)
    with pytest.warns(RuntimeWarning, match=r"op 2 \(tanh.*scale the inputs") as rec:
        nkern.kernel(arch, raw, get="both")
    assert rec[0].filename == __file__   # names the caller's line, not the package's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nkern.kernel(arch, raw / 255, get="both")
        nkern.kernel("[conv(3) relu]*2 gap dense", np.full((2, 5, 5, 1), 200.0))   # no Mehler layer
