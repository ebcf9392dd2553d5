"""Fashion-MNIST with an infinitely wide network: the NTK classifier, its regularization chosen
by 3-fold cross-validation.  Usage: python3 fashion_mnist_classifier.py [N_TRAIN [N_TEST [ARCH]]]"""
import sys
import nkern
from nkern.sklearn import NTKClassifier
from sklearn.model_selection import GridSearchCV

args = sys.argv[1:] + [None] * 3
n_train, n_test = int(args[0] or 1000), int(args[1] or 1000)
arch = args[2] or "w=1.41 b=0.1 flatten [dense relu]*3 dense"
x, y = nkern.data.subset(*nkern.data.fashion_mnist("train"), n_train, balanced=True, seed=0)
xt, yt = nkern.data.subset(*nkern.data.fashion_mnist("test"), n_test, balanced=True, seed=1)
search = GridSearchCV(NTKClassifier(arch=arch), {"reg": [1e-4, 1e-3, 1e-2, 1e-1]}, cv=3)
search.fit(x / 255, y)
print("arch %s: reg %g (cv accuracy %.4f), test accuracy %.4f on %d images"
      % (arch, search.best_params_["reg"], search.best_score_, search.score(xt / 255, yt), n_test))
