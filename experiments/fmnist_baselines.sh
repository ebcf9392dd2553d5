#!/usr/bin/env bash
# nkern's default kernel next to the standard baselines on identical Fashion-MNIST subsets: the
# first N training images and the first N_TEST of the official test split, for each N.
#   RBF-SVC      scikit-learn (Debian), C and gamma by 3-fold cross-validation on the training set
#   nkern MLP    fc(3) = flatten [dense relu]*3 dense, w=1.41 b=0.1, NTK, raw [0, 1] pixels
#   nkern best   `nkern classify --data fashion-mnist` without --arch: the validated default
# Every nkern choice (regularization) is made on a held-out fifth of the training set; the test
# set only scores.  Accuracy, its standard error sqrt(p (1 - p) / n_test) and wall time.
# usage: fmnist_baselines.sh [N_TRAIN_LIST] [N_TEST]     e.g. fmnist_baselines.sh 1000,2000 10000
# EXTRA adds options to the nkern runs (e.g. EXTRA='--threads 2').
set -euo pipefail
cd "$(dirname "$0")/.."
LIST=${1:-1000,2000}; NTEST=${2:-10000}
N=build/nkern
PY=/usr/bin/python3
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
row() { awk -v m="$1" -v n="$2" -v t="$3" -v a="$4" -v s="$5" -v w="$6" -v x="$7" \
    'BEGIN { printf "%-12s %7d %7d %9.4f %8.4f %9.1f  %s\n", m, n, t, a, s, w, x }'; }
nkern_row() { # name n extra-args...
    local name=$1 n=$2; shift 2
    local t0 t1 out acc setting
    t0=$(date +%s.%N)
    out=$($N classify --data fashion-mnist --first --train "$n" --test "$NTEST" "$@" ${EXTRA:-} 2>"$tmp")
    t1=$(date +%s.%N)
    setting=$(sed -n 's/^setting: //p' "$tmp")
    acc=$(grep '^test:' <<<"$out" | tail -1 | sed -E 's/.*accuracy ([0-9.]+).*/\1/')
    row "$name" "$n" "$NTEST" "$acc" "$(awk -v p="$acc" -v m="$NTEST" 'BEGIN { print sqrt(p * (1 - p) / m) }')" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$setting"
}
printf '%-12s %7s %7s %9s %8s %9s  %s\n' method n_train n_test accuracy stderr seconds settings
for n in ${LIST//,/ }; do
    read -r _ _ _ acc se secs c g < <("$PY" experiments/svc_baseline.py "$n" "$NTEST")
    row rbf-svc "$n" "$NTEST" "$acc" "$se" "$secs" "C=$c gamma=$g (3-fold CV on the training set)"
    nkern_row nkern-mlp "$n" --arch 'w=1.41 b=0.1 fc(3)' --kernel ntk --reg 1e-4,1e-3,1e-2,1e-1
    nkern_row nkern-best "$n"
done
