#!/usr/bin/env bash
# The demo: exact NNGP/NTK kernels of an MLP, a CNN with flatten and a CNN with global average
# pooling on Fashion-MNIST (Debian's dataset-fashion-mnist), and what they predict.
set -euo pipefail
cd "$(dirname "$0")/.."
N=build/nkern
D=/usr/share/datasets/fashion-mnist
[ -f $D/train-images-idx3-ubyte.gz ] || { echo "demo: $D missing (make deps installs dataset-fashion-mnist)"; exit 2; }
echo "nkern demo: Fashion-MNIST, $(nproc) cores"
if $N classify --help >/dev/null 2>&1; then
    bash tools/demo_classify.sh
    exit
fi
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
printf '%-40s %8s %10s %14s\n' "architecture" "images" "seconds" "ms per entry"
run() {
    local spec=$1 n=$2
    local t0=$(date +%s.%N)
    $N kernel --arch "$spec" --x1 $D/train-images-idx3-ubyte.gz --n1 "$n" --get both --out "$out/k" --quiet
    local t1=$(date +%s.%N)
    awk -v s="$spec" -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { e = n*(n+1)/2; printf "%-40s %8d %10.2f %14.4f\n", s, n, b-a, 1000*(b-a)/e }'
}
run 'w=1.41 b=0.1 [dense relu]*3 dense' 2000
run 'w=1.41 b=0.1 [conv(3) relu]*5 flatten dense' 500
run 'w=1.41 b=0.1 [conv(3) relu]*5 gap dense' 20
