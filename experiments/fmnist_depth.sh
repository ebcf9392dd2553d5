#!/usr/bin/env bash
# CNN-GAP vs CNN-flatten vs MLP kernels at depth on Fashion-MNIST (SCIENCE.md section 4: global
# average pooling generalizes markedly better at depth), on identical subsets: the first TRAIN
# training and the first TEST test images.  The convolutional kernels run on the images pooled to
# RES x RES (avgpool on the data, exact; RES = 28 is full resolution, 7 is what a shared 2-core
# machine affords for CNN-GAP at depth); the MLP on full 28x28 images as well.  NTK and NNGP at
# t = inf, regularization chosen on a held-out fifth of the training set; standard errors
# sqrt(p (1 - p) / TEST).  usage: fmnist_depth.sh [TRAIN] [TEST] [DEPTH] [RES]
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN=${1:-2000}; TEST=${2:-2000}; DEPTH=${3:-8}; RES=${4:-7}
POOL=""
[ "$RES" -lt 28 ] && POOL="avgpool($((28 / RES)))"
ARCHS="w=1.41 b=0.1 $POOL cnn_gap($DEPTH)
w=1.41 b=0.1 $POOL cnn_flatten($DEPTH)
w=1.41 b=0.1 $POOL fc($DEPTH)
w=1.41 b=0.1 fc($DEPTH)"
printf '%-44s %-5s %9s %8s %9s\n' architecture kernel accuracy stderr seconds
while IFS= read -r a; do
    t0=$(date +%s.%N)
    out=$(build/nkern classify --data fashion-mnist --first --train "$TRAIN" --test "$TEST" --arch "$a" --kernel both \
            --reg 1e-4,1e-3,1e-2,1e-1 --precision f32 --quiet)
    t1=$(date +%s.%N)
    grep '^test:' <<<"$out" | while read -r line; do
        k=$(awk '{print $2}' <<<"$line")
        acc=$(sed -E 's/.*accuracy ([0-9.]+).*/\1/' <<<"$line")
        awk -v a="$a" -v k="$k" -v p="$acc" -v m="$TEST" -v s="$t0" -v e="$t1" \
            'BEGIN { printf "%-44s %-5s %9.4f %8.4f %9.1f\n", a, k, p, sqrt(p * (1 - p) / m), e - s }'
    done
done <<<"$ARCHS"
