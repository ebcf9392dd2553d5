#!/usr/bin/env bash
# Claim (Geifman, Galun, Jacobs, Basri 2022; SCIENCE.md section 3): the eigenvalues of
# convolutional NTKs decay polynomially, at a rate that depends on depth, filter size and the
# number of patches an eigenfunction involves.
# (a) analytic: product-of-spheres eigenvalues lambda_k (`nkern spectrum --patches`) of relu CNN
#     NTKs on patches on S^2, non-overlapping windows; exponent alpha of lambda ~ k^-alpha fitted
#     (least squares of log lambda on log k, even k from K/4 up to K, lambda > 1e-12 max) along
#       single  (k, 0, ...)      one patch
#       pair    (k, k, 0, ...)   two sibling patches, k each (alpha per unit of k)
#       far     (k, 0, 0, k)     two patches joined only at the top (4 patches)
#     against the depth of per-patch layers, the filter of the joining conv and the patches.
# (b) empirical: the NTK Gram of N = 2000 `nkern synth` samples (uniform patches on S^2),
#     decay exponent of its eigenvalues by rank (`nkern spectrum --kernel --fit 10:500`) against
#     depth, filter size (circular convolutions over the positions) and the number of patches.
set -eu
cd "$(dirname "$0")/.."
NK=${NKERN:-build/nkern}
OUT=experiments/out; mkdir -p "$OUT"
N=${N:-2000}

# fit PATTERN FILE K: alpha along the degree vectors matching a printf pattern of k
fit() {
    awk -F'\t' -v pat="$1" -v K="$3" '
        !/^#/ { lam[$1] = $4; if ($4 > mx) mx = $4 }
        END {
            for (k = 2; k <= K; k += 2) {
                if (k < K / 4) continue
                key = sprintf(pat, k, k); l = lam[key]
                if (!(l > 1e-12 * mx)) continue
                x = log(k); y = log(l); sx += x; sy += y; sxx += x * x; sxy += x * y; m++
            }
            if (m < 2) { printf "n/a"; exit }
            printf "%.2f", -(m * sxy - sx * sy) / (m * sxx - sx * sx)
        }' "$2"
}

echo "== (a) analytic product-of-spheres eigenvalues, NTK, patches on S^2"
printf "%-58s %3s %4s  %8s %8s %8s\n" "spec" "m" "K" "single" "pair" "far"
analytic() { # NAME M K SPEC
    $NK spectrum --patches "$2" --dim 3 --kmax "$3" --arch "$4" --out "$OUT/decay_$1.tsv" > /dev/null
    local z=""; for ((i = 2; i < $2; i++)); do z="$z,0"; done
    local single pair far="-"
    if [ "$2" -eq 2 ]; then single=$(fit "(%d,0)" "$OUT/decay_$1.tsv" "$3"); pair=$(fit "(%d,%d)" "$OUT/decay_$1.tsv" "$3")
    else single=$(fit "(%d,0,0,0)" "$OUT/decay_$1.tsv" "$3"); pair=$(fit "(%d,%d,0,0)" "$OUT/decay_$1.tsv" "$3")
         far=$(awk -F'\t' -v K="$3" '!/^#/ { split(substr($1, 2, length($1) - 2), k, ","); if (k[2] == 0 && k[3] == 0 && k[1] == k[4]) print $1 "\t" $2 "\t" $3 "\t" $4 }' "$OUT/decay_$1.tsv" \
              | sed 's/^(\([0-9]*\),0,0,[0-9]*)/(\1,\1)/' > "$OUT/decay_$1.far.tsv"; fit "(%d,%d)" "$OUT/decay_$1.far.tsv" "$3"); fi
    printf "%-58s %3s %4s  %8s %8s %8s\n" "$4" "$2" "$3" "$single" "$pair" "$far"
}
analytic mlp2   2 40 "flatten dense relu dense"
analytic d1     2 40 "conv(1) relu conv(2,stride=2,pad=valid) relu flatten dense"
analytic d2     2 40 "[conv(1) relu]*2 conv(2,stride=2,pad=valid) relu flatten dense"
analytic d4     2 40 "[conv(1) relu]*4 conv(2,stride=2,pad=valid) relu flatten dense"
analytic top3   2 40 "conv(1) relu conv(2,stride=2,pad=valid) relu [dense relu]*2 flatten dense"
analytic mlp4   4 16 "flatten dense relu dense"
analytic tree4  4 16 "conv(1) relu conv(2,stride=2,pad=valid) relu conv(2,stride=2,pad=valid) relu flatten dense"
analytic flat4  4 16 "conv(1) relu conv(4,stride=4,pad=valid) relu flatten dense"

echo "== (b) empirical NTK Gram of $N synth samples (positions x 3 channels), decay by rank 10..500"
printf "%-62s %3s  %8s %10s\n" "spec" "m" "alpha" "eff.rank"
for m in 4 8; do
    $NK synth --patches $m --dim 3 --n "$N" --target 0:1 --seed 3 --x "$OUT/decay_x$m.npy" > /dev/null
done
empirical() { # NAME M SPEC
    $NK kernel --arch "$3" --x1 "$OUT/decay_x$2.npy" --get ntk --out "$OUT/decay_K_$1.npy" --threads 2 --quiet
    local s; s=$($NK spectrum --kernel "$OUT/decay_K_$1.npy" --fit 10:500 --out "$OUT/decay_eig_$1.tsv" --plot "$OUT/decay_eig_$1.svg" 2>/dev/null)
    printf "%-62s %3s  %8.3f %10.1f\n" "$3" "$2" "$(awk '$1 == "decay_alpha" { print $2 }' <<<"$s")" "$(awk '$1 == "effective_rank" { print $2 }' <<<"$s")"
    rm -f "$OUT/decay_K_$1.npy"
}
empirical mlp8  8 "flatten dense relu dense"
empirical L1q3  8 "conv(3,pad=circular) relu flatten dense"
empirical L2q3  8 "[conv(3,pad=circular) relu]*2 flatten dense"
empirical L4q3  8 "[conv(3,pad=circular) relu]*4 flatten dense"
empirical L2q1  8 "[conv(1,pad=circular) relu]*2 flatten dense"
empirical L2q2  8 "[conv(2,pad=circular) relu]*2 flatten dense"
empirical L2q5  8 "[conv(5,pad=circular) relu]*2 flatten dense"
empirical m4L2q3 4 "[conv(3,pad=circular) relu]*2 flatten dense"
