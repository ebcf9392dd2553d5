#!/usr/bin/python3
"""RBF-SVC baseline on Fashion-MNIST (scikit-learn from Debian): the first N_TRAIN training
images and the first N_TEST test images, pixels scaled to [0, 1]; C and gamma chosen by 3-fold
cross-validation on the training images only.  Prints one line:
  svc N_TRAIN N_TEST ACCURACY STDERR SECONDS C GAMMA
usage: svc_baseline.py N_TRAIN N_TEST [DATA_DIR]"""
import gzip
import sys
import time

import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC


def idx(path, offset):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def main():
    n_train, n_test = int(sys.argv[1]), int(sys.argv[2])
    d = sys.argv[3] if len(sys.argv) > 3 else "/usr/share/datasets/fashion-mnist"
    x = idx(f"{d}/train-images-idx3-ubyte.gz", 16).reshape(-1, 784)[:n_train] / 255.0
    y = idx(f"{d}/train-labels-idx1-ubyte.gz", 8)[:n_train]
    xt = idx(f"{d}/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)[:n_test] / 255.0
    yt = idx(f"{d}/t10k-labels-idx1-ubyte.gz", 8)[:n_test]
    t0 = time.time()
    # gamma around scikit-learn's 'scale' heuristic 1 / (D var(x)); C over two decades
    scale = 1.0 / (x.shape[1] * x.var())
    grid = {"C": [1, 3, 10, 30, 100], "gamma": [scale / 3, scale, 3 * scale]}
    search = GridSearchCV(SVC(kernel="rbf"), grid, cv=3, n_jobs=1)
    search.fit(x, y)
    acc = float((search.predict(xt) == yt).mean())
    se = (acc * (1 - acc) / n_test) ** 0.5
    print(f"svc {n_train} {n_test} {acc:.4f} {se:.4f} {time.time() - t0:.1f} "
          f"{search.best_params_['C']} {search.best_params_['gamma']:.4g}")


if __name__ == "__main__":
    main()
