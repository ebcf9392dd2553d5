#!/usr/bin/env bash
# Claim (Xiao, Pennington, Schoenholz 2020; SCIENCE.md section 4): with depth, the NTK of a deep
# network on real data degenerates in a way fixed by the mean-field phase.
#   ordered (chi_1 < 1): lambda_max grows, the bulk does not follow: the condition number grows
#     with depth (trainability is lost), while P(Theta) keeps predicting;
#   chaotic (chi_1 > 1): the kernel tends to diagonal + constant, kappa -> 1, and the test
#     predictions P(Theta) = Theta_test,train Theta^-1 Y fall to chance (memorization only);
#   CNN-flatten follows the MLP (same phase diagram); CNN-GAP has a different bulk.
# Data: the first 64 Fashion-MNIST training images (+64 held out), 4x4-averaged to 7x7, erf
# networks with sb2 = 0.05 (critical sw2 = 1.3758 by `nkern theory phase`).
set -eu
cd "$(dirname "$0")/.."
NK=${NKERN:-build/nkern}
OUT=experiments/out; mkdir -p "$OUT"
FM=/usr/share/datasets/fashion-mnist
N=${N:-64}; NTEST=${NTEST:-64}; DEPTHS=${DEPTHS:-1,2,4,8,16,32}
$NK theory phase --act erf --sw2 1:2:2 --sb2 0.05:0.05:1 | awk '/^#/ {next} NF == 2 { print "critical sw2 at sb2 = 0.05:", $2 }'
for sw2 in 1.0 3.0; do
    $NK theory meanfield --act erf --sw2 $sw2 --sb2 0.05 | awk -v s=$sw2 '$1 == "chi1" || $1 == "phase" || $1 == "c_star" { printf "sw2=%s %s=%s  ", s, $1, $2 } END { print "" }'
    $NK theory depth --data $FM/train-images-idx3-ubyte.gz --labels $FM/train-labels-idx1-ubyte.gz \
        --n $N --n-test $NTEST --downsample 4 --act erf --sw2 $sw2 --sb2 0.05 --depths $DEPTHS \
        --out "$OUT/depth_erf_sw2_$sw2.tsv" --plot "$OUT/depth_erf_sw2_$sw2.svg"
done
# MLPs alone are cheap: follow them much deeper on 128 (+128) samples
for sw2 in 1.0 3.0; do
    $NK theory depth --data $FM/train-images-idx3-ubyte.gz --labels $FM/train-labels-idx1-ubyte.gz \
        --n 128 --n-test 128 --downsample 4 --act erf --sw2 $sw2 --sb2 0.05 --depths 1,4,16,64,128,256 \
        --families mlp --out "$OUT/depth_mlp_deep_sw2_$sw2.tsv" --plot "$OUT/depth_mlp_deep_sw2_$sw2.svg"
done
