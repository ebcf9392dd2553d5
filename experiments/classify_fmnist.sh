#!/usr/bin/env bash
# Fashion-MNIST classification with exact kernels: MLP, CNN + flatten, CNN + global average
# pooling; NNGP posterior and NTK infinite-ensemble (t = inf); the regularization chosen by
# validation on a held-out fifth of the training set.  usage: classify_fmnist.sh [TRAIN] [TEST]
# ARCHS (newline-separated specs) replaces the three default architectures; EXTRA adds options
# to every classify call (e.g. EXTRA='--precision f32').
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN=${1:-2000}; TEST=${2:-2000}
N=build/nkern
printf '%-52s %-5s %9s %9s %10s\n' architecture kernel accuracy mse 'seconds (both)'
DEFAULT='w=1.41 b=0.1 flatten [dense relu]*3 dense
w=1.41 b=0.1 [conv(3) relu]*3 flatten dense
w=1.41 b=0.1 avgpool(4) [conv(3) relu]*3 gap dense'
while IFS= read -r a; do
    [ -n "$a" ] || continue
    # one kernel computation gives both the NNGP and the NTK predictions
    t0=$(date +%s.%N)
    out=$($N classify --data fashion-mnist --train "$TRAIN" --test "$TEST" --arch "$a" --kernel both \
            --reg 1e-4,1e-3,1e-2,1e-1 ${EXTRA:-} --quiet 2>&1)
    t1=$(date +%s.%N)
    grep '^test:' <<<"$out" | while read -r line; do
        k=$(awk '{print $2}' <<<"$line")
        acc=$(sed -E 's/.*accuracy ([0-9.]+).*/\1/' <<<"$line"); mse=$(sed -E 's/.*mse ([0-9.]+).*/\1/' <<<"$line")
        awk -v a="$a" -v k=$k -v acc="$acc" -v m="$mse" -v s="$t0" -v e="$t1" \
            'BEGIN { printf "%-52s %-5s %9.4f %9.5f %10.1f\n", a, k, acc, m, e - s }'
    done
done <<<"${ARCHS:-$DEFAULT}"
