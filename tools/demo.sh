#!/usr/bin/env bash
# The demo: on Fashion-MNIST (Debian's dataset-fashion-mnist), nkern's default kernel next to an
# RBF-SVC and the plain MLP kernel on the first 1000 training and the first 10,000 test images,
# then the exact NNGP/NTK kernels of an MLP, a CNN with flatten and a CNN with global average
# pooling (1000 / 1000), with test accuracy and the time each took (1 min 46 s on 2 cores, lightly loaded).
set -euo pipefail
cd "$(dirname "$0")/.."
D=/usr/share/datasets/fashion-mnist
[ -f $D/train-images-idx3-ubyte.gz ] || { echo "demo: $D missing (make deps installs dataset-fashion-mnist)"; exit 2; }
echo "nkern demo: Fashion-MNIST, $(nproc) cores"
echo "== the default kernel against the baselines (first 1000 train / first 10,000 test images)"
bash experiments/fmnist_baselines.sh 1000 10000
echo
echo "== MLP, CNN-flatten, CNN-GAP kernels (1000 / 1000 random images)"
build/nkern arch 'w=1.41 b=0.1 avgpool(4) [conv(3) relu]*3 gap dense' --input 28x28x1 --n 1000
echo
bash experiments/classify_fmnist.sh 1000 1000
