#!/usr/bin/env bash
# Claim (Bietti & Mairal 2019; Bietti & Bach 2021; Geifman et al. 2022): the relu NTK on S^{d-1}
# has eigenvalues mu_k ~ k^-d (polynomial, rate set by the dimension), the same rate at every
# depth; a smooth activation (erf) gives a much faster (super-polynomial) decay.  Also the sum
# rule sum_k N(d,k) mu_k = k(1).
set -eu
cd "$(dirname "$0")/.."
NK=${NKERN:-build/nkern}
OUT=experiments/out; mkdir -p "$OUT"
for d in 3 4 5 8; do
    $NK spectrum --sphere --arch "dense relu dense" --dim $d --kmax 160 --nquad 6000 --fit 40:160 \
        --plot "$OUT/sphere_relu_ntk_d$d.svg" 2>/dev/null | awk -v d=$d '/^# decay/ { print "relu NTK, 1 hidden layer, d =", d, ":", $0 } /^# k\(1\)/ { print "   ", $0 }'
done
for L in 2 4 8; do
    $NK spectrum --sphere --arch "[dense relu]*$L dense" --dim 3 --kmax 160 --nquad 6000 --fit 40:160 2>/dev/null \
        | awk -v L=$L '/^# decay/ { print "relu NTK, depth", L, ", d = 3:", $0 }'
done
$NK spectrum --sphere --arch "b=0.3 dense relu dense" --dim 3 --kmax 160 --nquad 6000 --fit 40:160 2>/dev/null \
    | awk '/^# decay/ { print "relu NTK with bias (odd degrees nonzero), d = 3:", $0 }'
$NK spectrum --sphere --arch "w=1.5 b=0.3 dense erf dense" --dim 3 --kmax 40 --fit 5:40 --plot "$OUT/sphere_erf_ntk_d3.svg" 2>/dev/null \
    | awk '!/^#/ && ($1 == 5 || $1 == 10 || $1 == 20 || $1 == 30) { printf "erf NTK d = 3: mu_%d = %s\n", $1, $3 } /^# decay/ { print "erf NTK d = 3 (power-law fit is poor: decay is faster):", $0 }'
