"""nkern.sklearn: the estimator API, GridSearchCV and Pipeline, the kernel callable, and
predictions equal to `nkern predict` and to numpy."""
import subprocess

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import nkern
from nkern.sklearn import NNGPClassifier, NNGPRegressor, NTKClassifier, NTKRegressor, kernel

MLP = "w=1.41 b=0.1 flatten [dense relu]*2 dense"


def test_grid_search_on_fashion_mnist(fashion500):
    x, y = fashion500
    g = GridSearchCV(NTKClassifier(arch=MLP), {"reg": [1e-4, 1e-2, 1.0]}, cv=3).fit(x[:400], y[:400])
    assert g.best_params_["reg"] in (1e-4, 1e-2, 1.0)
    assert len(g.cv_results_["mean_test_score"]) == 3
    acc = g.score(x[400:], y[400:])
    assert acc > 0.6, acc   # chance is 0.1; 400 training images of a kernel classifier give ~0.75


def test_pipeline_with_cnn_on_rows(fashion500):
    x, y = fashion500
    rows = x.reshape(len(x), -1)
    p = make_pipeline(StandardScaler(), NNGPClassifier(arch="avgpool(4) conv(3) relu flatten dense",
                                                        input_shape=(28, 28, 1), reg=1e-2))
    p.fit(rows[:200], y[:200])
    assert p.score(rows[400:], y[400:]) > 0.5


def test_params_and_clone():
    est = NTKRegressor(arch="dense erf dense", reg=0.5, time=3.0)
    assert est.get_params()["arch"] == "dense erf dense" and est.get_params()["time"] == 3.0
    est.set_params(reg=0.25)
    c = clone(est)
    assert c.reg == 0.25 and c.arch == "dense erf dense" and c is not est


def test_regressors_against_numpy():
    rng = np.random.default_rng(0)
    x, xt = rng.standard_normal((40, 5)), rng.standard_normal((9, 5))
    y = np.sin(x[:, 0]) + 0.1 * rng.standard_normal(40)
    reg = 1e-2
    ntk = NTKRegressor(arch="b=0.3 [dense relu]*2 dense", reg=reg).fit(x, y)
    t, ts = nkern.kernel(ntk.arch, x), nkern.kernel(ntk.arch, xt, x)
    ref = ts @ np.linalg.solve(t + reg * np.mean(np.diag(t)) * np.eye(40), y)
    assert np.allclose(ntk.predict(xt), ref, rtol=0, atol=1e-9 * np.abs(ref).max())
    gp = NNGPRegressor(arch="b=0.3 [dense relu]*2 dense", reg=reg).fit(x, y)
    k, ks = nkern.kernel(gp.arch, x, get="nngp"), nkern.kernel(gp.arch, xt, x, get="nngp")
    ref = ks @ np.linalg.solve(k + reg * np.mean(np.diag(k)) * np.eye(40), y)
    assert np.allclose(gp.predict(xt), ref, rtol=0, atol=1e-9 * np.abs(ref).max())
    assert gp.score(x, y) > 0.9   # nearly interpolates its training set at this regularization


def test_classifier_bit_identical_to_cli_predict(tmp_path, cli):
    rng = np.random.default_rng(4)
    x, xt = rng.standard_normal((30, 6)), rng.standard_normal((8, 6))
    labels = rng.integers(0, 3, 30)
    clf = NTKClassifier(arch="[dense relu]*2 dense", reg=1e-3).fit(x, np.array(["a", "b", "c"])[labels])
    np.save(tmp_path / "t.npy", nkern.kernel(clf.arch, x))
    np.save(tmp_path / "ts.npy", nkern.kernel(clf.arch, xt, x))
    np.save(tmp_path / "y.npy", labels.astype(np.float64))
    r = subprocess.run([cli, "predict", "--ntk-train", "t.npy", "--ntk-test", "ts.npy", "--y", "y.npy", "--one-hot",
                        "--reg", "1e-3", "--out", "p"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cli_mean = np.load(tmp_path / "p.mean.npy")[0]   # (T = 1, M, classes)
    assert np.array_equal(clf.decision_function(xt), cli_mean)
    assert list(clf.predict(xt)) == list(np.array(["a", "b", "c"])[np.argmax(cli_mean, 1)])


def test_svc_callable_equals_precomputed(fashion500):
    x, y = fashion500
    rows = x.reshape(len(x), -1)[:300]
    spec = "[dense relu]*2 dense"
    a = SVC(kernel=kernel(spec), C=10).fit(rows[:200], y[:200])
    K = nkern.kernel(spec, rows[:200])
    b = SVC(kernel="precomputed", C=10).fit(K, y[:200])
    pa = a.predict(rows[200:])
    assert np.array_equal(pa, b.predict(nkern.kernel(spec, rows[200:], rows[:200])))
    assert np.mean(pa == y[200:300]) > 0.5


def test_unfitted_and_bad_input():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        NTKRegressor().predict(np.ones((2, 3)))
    with pytest.raises(ValueError):
        NTKRegressor(arch="dense relu dense").fit(np.ones((3, 2)), np.ones(4))
