#!/usr/bin/env bash
# CNN-GAP vs CNN-flatten vs MLP kernels at depth on Fashion-MNIST (SCIENCE.md section 4: global
# average pooling generalizes markedly better at depth), on identical subsets: the first TRAIN
# training and the first TEST test images.  The convolutional kernels run on the images pooled to
# RES x RES (avgpool on the data, exact; RES = 28 is full resolution, 7 is what a shared 2-core
# machine affords for CNN-GAP at depth); the MLP on full 28x28 images as well.  NTK and NNGP at
# t = inf, regularization chosen on a held-out fifth of the training set; standard errors
# sqrt(p (1 - p) / TEST).  DEPTHS is one depth or a comma list (2,4,8,16,32).
# usage: [JOURNAL=DIR] [ARCHS='gap flatten mlp mlp28'] fmnist_depth.sh [TRAIN] [TEST] [DEPTHS] [RES]
# JOURNAL=DIR: each kernel in tiles journaled under DIR/<architecture> (classify --journal): a
# killed run computes only the missing tiles when started again (the 28x28 CNN-GAP at depth 8 on
# 2000 + 2000 images is ~3 hours on 2 idle cores).  ARCHS picks the rows (default all four).
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN=${1:-2000}; TEST=${2:-2000}; DEPTHS=${3:-8}; RES=${4:-7}
ROWS=${ARCHS:-gap flatten mlp mlp28}
[ -n "${JOURNAL:-}" ] && mkdir -p "$JOURNAL"
POOL=""
[ "$RES" -lt 28 ] && POOL="avgpool($((28 / RES))) "
printf '%-44s %-5s %9s %8s %9s\n' architecture kernel accuracy stderr seconds
for d in ${DEPTHS//,/ }; do
    for row in $ROWS; do
        case $row in
            gap) a="w=1.41 b=0.1 ${POOL}cnn_gap($d)" ;;
            flatten) a="w=1.41 b=0.1 ${POOL}cnn_flatten($d)" ;;
            mlp) [ -n "$POOL" ] || continue; a="w=1.41 b=0.1 ${POOL}fc($d)" ;;
            mlp28) a="w=1.41 b=0.1 fc($d)" ;;
            *) echo "fmnist_depth.sh: ARCHS: unknown row '$row' (gap, flatten, mlp, mlp28)" >&2; exit 2 ;;
        esac
        journal=()
        [ -n "${JOURNAL:-}" ] && journal=(--journal "$JOURNAL/$(tr -c 'a-z0-9\n' _ <<<"$a")")
        t0=$(date +%s.%N)
        out=$(build/nkern classify --data fashion-mnist --first --train "$TRAIN" --test "$TEST" --arch "$a" --kernel both \
                --reg 1e-4,1e-3,1e-2,1e-1 --precision f32 --quiet "${journal[@]}")
        t1=$(date +%s.%N)
        grep '^test:' <<<"$out" | while read -r line; do
            k=$(awk '{print $2}' <<<"$line")
            acc=$(sed -E 's/.*accuracy ([0-9.]+).*/\1/' <<<"$line")
            awk -v a="$a" -v k="$k" -v p="$acc" -v m="$TEST" -v s="$t0" -v e="$t1" \
                'BEGIN { printf "%-44s %-5s %9.4f %8.4f %9.1f\n", a, k, p, sqrt(p * (1 - p) / m), e - s }'
        done
    done
done
