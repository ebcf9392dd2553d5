"""scikit-learn estimators on exact infinite-width kernels.

    from nkern.sklearn import NTKClassifier
    clf = NTKClassifier(arch="[dense relu]*2 dense", reg=1e-3).fit(x_train, y_train)
    clf.score(x_test, y_test)
    GridSearchCV(NTKClassifier(arch=...), {"reg": [1e-4, 1e-2]}).fit(x, y)

Every estimator keeps its training inputs and computes, in fit, the training kernel of `arch`
and, in predict, the kernel between the new inputs (rows) and the training inputs (columns)
through nkern.kernel; predictions are then those of nkern.predict (and of `nkern predict` /
`nkern classify`): NTK estimators give the infinite ensemble trained by gradient flow on the
MSE until `time` (default infinity), NNGP estimators the NNGP posterior mean.  `reg` is
diag_reg relative to the mean diagonal of the training kernel.

Inputs may be (N, D) feature rows, or arrays with the samples first in any shape the
architecture takes ((N, H, W, C) images for CNNs).  With `input_shape` (e.g. (28, 28, 1)),
rows are reshaped to it, so a CNN estimator also works after 2-D steps of a Pipeline.

nkern.sklearn.kernel(spec) is a callable kernel for estimators that take one, e.g.
SVC(kernel=nkern.sklearn.kernel("[dense relu]*3 dense")); for kernel="precomputed" pass
nkern.kernel(spec, x_train) to fit and nkern.kernel(spec, x_test, x_train) to predict.
"""
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from . import kernels as _kernels
from .infer import predict as _predict, one_hot as _one_hot


def _samples(x, input_shape):
    """x as a float64 array with samples first, reshaped to input_shape if given."""
    x = np.asarray(x, dtype=np.float64)
    if input_shape is not None:
        x = x.reshape((x.shape[0],) + tuple(input_shape))
    elif x.ndim == 1:
        raise ValueError("X: a 1-D array; expected samples first, e.g. (N, D) (reshape(-1, 1) for one feature)")
    return np.ascontiguousarray(x)


class Kernel:
    """A kernel callable k(X, Y=None) -> (len(X), len(Y)) matrix of `spec` (the NTK, or the
    NNGP with get="nngp"), for scikit-learn estimators that take a callable kernel."""

    def __init__(self, spec, get="ntk", input_shape=None, precision="f64", threads=None):
        if get not in ("ntk", "nngp"):
            raise ValueError("get: %r (use 'ntk' or 'nngp')" % (get,))
        self.spec, self.get, self.input_shape = spec, get, input_shape
        self.precision, self.threads = precision, threads

    def __call__(self, X, Y=None):
        x = _samples(X, self.input_shape)
        y = None if Y is None or Y is X else _samples(Y, self.input_shape)
        return _kernels.kernel(self.spec, x, y, get=self.get, precision=self.precision, threads=self.threads)

    def __repr__(self):
        return "nkern.sklearn.kernel(%r, get=%r)" % (self.spec, self.get)


def kernel(spec, get="ntk", input_shape=None, precision="f64", threads=None):
    """A callable kernel: SVC(kernel=nkern.sklearn.kernel("[dense relu]*2 dense"))."""
    return Kernel(spec, get=get, input_shape=input_shape, precision=precision, threads=threads)


class _KernelRegression(BaseEstimator):
    """Shared fit / predict: kernel regression on targets Y (N, k) with the kernel `_get`."""
    _get = "ntk"

    def __init__(self, arch="[dense relu]*2 dense", reg=1e-4, time=None, lr=1.0, precision="f64",
                 threads=None, input_shape=None):
        self.arch = arch
        self.reg = reg
        self.time = time
        self.lr = lr
        self.precision = precision
        self.threads = threads
        self.input_shape = input_shape

    def _kernel(self, x1, x2=None):
        return _kernels.kernel(self.arch, x1, x2, get=self._get, precision=self.precision, threads=self.threads)

    def _fit_targets(self, X, targets):
        self.X_train_ = _samples(X, self.input_shape)
        if len(self.X_train_) != len(targets):
            raise ValueError("X has %d samples, y has %d" % (len(self.X_train_), len(targets)))
        self.targets_ = np.ascontiguousarray(targets, dtype=np.float64)
        self.k_train_ = self._kernel(self.X_train_)
        self.n_features_in_ = int(np.prod(self.X_train_.shape[1:]))
        return self

    def _mean(self, X):
        check_is_fitted(self, "k_train_")
        k_test = self._kernel(_samples(X, self.input_shape), self.X_train_)
        if self._get == "ntk":
            # the infinite ensemble after gradient flow for time t (t = inf by default)
            return _predict(None, self.targets_, None, ntk_train=self.k_train_, ntk_test=k_test,
                            time=self.time, reg=self.reg, lr=self.lr)
        return _predict(self.k_train_, self.targets_, k_test, time=self.time, reg=self.reg, lr=self.lr)


class _Regressor(RegressorMixin, _KernelRegression):
    def fit(self, X, y):
        """Compute the training kernel of X and keep the targets y (N) or (N, k)."""
        return self._fit_targets(X, np.asarray(y, dtype=np.float64))

    def predict(self, X):
        """Mean prediction (M) or (M, k) at the inputs X."""
        return self._mean(X)


class _Classifier(ClassifierMixin, _KernelRegression):
    def fit(self, X, y):
        """Compute the training kernel of X; targets are one-hot, centred as in `nkern
        classify` (0.9 for the class, -0.1 elsewhere)."""
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        return self._fit_targets(X, _one_hot(codes, len(self.classes_)))

    def decision_function(self, X):
        """Regression outputs (M, classes): the predicted one-hot targets."""
        return self._mean(X)

    def predict(self, X):
        """The class of the largest output (the first on ties, as nk_accuracy)."""
        return self.classes_[np.argmax(self._mean(X), axis=1)]


class NTKRegressor(_Regressor):
    """Infinite ensemble of networks `arch` trained by gradient flow on the MSE (NTK)."""
    _get = "ntk"


class NTKClassifier(_Classifier):
    """Classifier by NTK gradient-flow regression on centred one-hot targets."""
    _get = "ntk"


class NNGPRegressor(_Regressor):
    """NNGP posterior mean (Bayesian inference with the network prior)."""
    _get = "nngp"


class NNGPClassifier(_Classifier):
    """Classifier by the NNGP posterior mean on centred one-hot targets."""
    _get = "nngp"
