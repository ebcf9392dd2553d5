#!/usr/bin/env bash
# The demo: exact NNGP/NTK kernels of an MLP, a CNN with flatten and a CNN with global average
# pooling on Fashion-MNIST (Debian's dataset-fashion-mnist), their test accuracy and the time
# each took (1000 training and 1000 test images; about 5 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
D=/usr/share/datasets/fashion-mnist
[ -f $D/train-images-idx3-ubyte.gz ] || { echo "demo: $D missing (make deps installs dataset-fashion-mnist)"; exit 2; }
echo "nkern demo: Fashion-MNIST, 1000 train / 1000 test images, $(nproc) cores"
build/nkern arch 'w=1.41 b=0.1 avgpool(4) [conv(3) relu]*3 gap dense' --input 28x28x1 --n 1000
echo
bash experiments/classify_fmnist.sh 1000 1000
