#!/usr/bin/env bash
# Claim: the Monte Carlo kernels of finite networks (nkern mc) converge to the exact
# infinite-width kernels (nkern kernel) entry by entry, with two separate errors:
#  - the sampling error of a mean over S networks, 1/sqrt(width S) for the NTK (and for the NNGP
#    averaged over a readout as wide as the hidden layers), 1/sqrt(S) for one readout unit;
#  - the finite-width bias of the mean, 1/width, zero for one hidden layer.
# Part A: one hidden layer (no bias), S fixed: error x sqrt(width S) is constant.
# Part B: deep networks, S = 400 width (so the sampling error falls like 1/width too and stays
# below the bias): the error beyond the sampling error, sqrt(err^2 - se^2), times width is constant.
# Error = ||mc - exact||_F / ||exact||_F over the 8 x 8 Gram; se = ||standard errors||_F / ||exact||_F;
# both as root mean squares over SEEDS independent runs (default 4) to tame their scatter.
set -eu
cd "$(dirname "$0")/.."
NK=${NKERN:-build/nkern}
OUT=experiments/out; mkdir -p "$OUT"
PY=/usr/bin/python3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
$PY -c "
import numpy as np
r = np.random.default_rng(2)
np.save('$T/x.npy', r.standard_normal((8, 16)))
np.save('$T/img.npy', r.standard_normal((8, 8, 8, 1)))"
SEEDS=${SEEDS:-4}
# mc ARCH DATA WIDTH S OUTPUTS GET -> per kernel: name, rms err, rms se over SEEDS runs
mc() {
    for seed in $(seq 1 "$SEEDS"); do
        nice -n 10 $NK mc --arch "$1" --x1 "$2" --width "$3" --samples "$4" --outputs "$5" --get "$6" --seed "$seed" --compare --quiet
    done | awk '{ e[$1] += $3 * $3; s[$1] += $5 * $5; n[$1]++ } END { for (k in n) print k, sqrt(e[k] / n[k]), sqrt(s[k] / n[k]) }'
}
field() { awk -v k="$1:" -v c="$2" '$1 == k { print $c }'; }

A=$OUT/mc_fluctuation.tsv
{
    echo "# part A: one hidden layer, unbiased; errors relative (Frobenius); ntk_x_sqrt_nS = ntk * sqrt(width S)"
    echo "# dense: 'dense relu dense' on 8 x 16 Gaussian inputs; conv: 'conv(3) relu gap dense' on 8 x 8x8x1"
    echo "# nngp_k1: one readout unit; nngp_kn (and its se): width readout units, averaged"
    printf "# %-5s %6s %5s %11s %11s %11s %11s %11s %9s\n" set width S nngp_k1 nngp_kn nngp_kn_se ntk ntk_se ntk_x_sqrt_nS
} > "$A"
run_a() { # SET ARCH DATA WIDTH S
    local r1 r2
    r1=$(mc "$2" "$3" "$4" "$5" 1 both)
    r2=$(mc "$2" "$3" "$4" "$5" "$4" nngp)
    awk -v a="$1" -v w="$4" -v s="$5" -v k1="$(field nngp 2 <<<"$r1")" -v kn="$(field nngp 2 <<<"$r2")" \
        -v kns="$(field nngp 3 <<<"$r2")" -v t="$(field ntk 2 <<<"$r1")" -v ts="$(field ntk 3 <<<"$r1")" \
        'BEGIN { printf "  %-5s %6d %5d %11.4e %11.4e %11.4e %11.4e %11.4e %9.3f\n", a, w, s, k1, kn, kns, t, ts, t * sqrt(w * s) }' >> "$A"
}
t0=$(date +%s)
for w in 16 64 256 1024; do run_a dense "dense relu dense" "$T/x.npy" $w 64; done
for s in 16 256; do run_a dense "dense relu dense" "$T/x.npy" 256 $s; done
for w in 16 64 256; do run_a conv "conv(3) relu gap dense" "$T/img.npy" $w 64; done
cat "$A"

B=$OUT/mc_bias.tsv
{
    echo "# part B: deep networks, S = 400 width; excess = sqrt(err^2 - se^2) (the bias), times width"
    echo "# tanh4: NTK of 'b=0.2 [dense tanh]*4 dense', one readout unit"
    echo "# relu4: NNGP of '[dense relu]*4 dense', width readout units averaged"
    printf "# %-5s %5s %6s %6s %11s %11s %11s %9s\n" set get width S err se excess excess_x_n
} > "$B"
run_b() { # SET ARCH GET OUTPUTS(0 = width) WIDTH
    local k=$4 r; [ "$k" = 0 ] && k=$5
    r=$(mc "$2" "$T/x.npy" "$5" $((400 * $5)) "$k" "$3")
    awk -v a="$1" -v g="$3" -v w="$5" -v s=$((400 * $5)) -v e="$(field "$3" 2 <<<"$r")" -v se="$(field "$3" 3 <<<"$r")" \
        'BEGIN { x = e * e - se * se; x = x > 0 ? sqrt(x) : 0; printf "  %-5s %5s %6d %6d %11.4e %11.4e %11.4e %9.3f\n", a, g, w, s, e, se, x, x * w }' >> "$B"
}
for w in 4 8 16 32 64; do run_b tanh4 "b=0.2 [dense tanh]*4 dense" ntk 1 $w; done
for w in 4 8 16 32 64; do run_b relu4 "[dense relu]*4 dense" nngp 0 $w; done
cat "$B"
echo "# total $(( $(date +%s) - t0 )) s (shared 2-core machine)"

if command -v gnuplot >/dev/null; then
    gnuplot <<EOF
set terminal svg size 900,420 dynamic
set output "$OUT/mc_convergence.svg"
set multiplot layout 1,2
set logscale xy
set xlabel "width n"
set ylabel "relative error"
set key top right font ",10"
set xrange [10:2000]
set yrange [0.002:2]
set title "one hidden layer, S = 64: sampling error"
plot "< awk '!/^#/ && \$1 == \"dense\" && \$3 == 64' $A" using 2:7 with linespoints pt 7 title "NTK, dense", \
     "< awk '!/^#/ && \$1 == \"conv\"' $A" using 2:7 with linespoints pt 5 title "NTK, conv-gap", \
     "< awk '!/^#/ && \$1 == \"dense\" && \$3 == 64' $A" using 2:5 with linespoints pt 9 title "NNGP, n readout units", \
     "< awk '!/^#/ && \$1 == \"dense\" && \$3 == 64' $A" using 2:4 with linespoints pt 4 title "NNGP, 1 readout unit", \
     2/sqrt(64*x) with lines dt 2 lc rgb "gray" title "2/sqrt(n S)"
set xrange [3:100]
set yrange [0.002:1]
set title "4 hidden layers, S = 400 n: bias"
plot "< awk '!/^#/ && \$1 == \"tanh4\"' $B" using 3:7 with linespoints pt 7 title "NTK, tanh (b = 0.2)", \
     "< awk '!/^#/ && \$1 == \"relu4\"' $B" using 3:7 with linespoints pt 5 title "NNGP (n readout units), relu", \
     0.2/x with lines dt 2 lc rgb "gray" title "0.2/n", 1.2/x with lines dt 3 lc rgb "gray" title "1.2/n"
unset multiplot
EOF
    echo "plot: $OUT/mc_convergence.svg"
fi
