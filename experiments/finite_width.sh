#!/usr/bin/env bash
# Claims (Pacelli et al. 2023; Aiudi et al. 2023; SCIENCE.md section 5): in the proportional
# limit the Bayesian posterior of a one-hidden-layer network of finite width N is kernel
# regression with a renormalized kernel:
#   (a) dense: K_R = Q K / lambda1 with one scalar Q, so finite width equals an infinite-width
#       network with the readout prior rescaled;
#   (b) conv: K_R = sum_ij Q_ij K_ij / (lambda1 Np) with a data-dependent matrix Q (local
#       renormalization), which can make the finite CNN beat its infinite-width kernel;
#   (c) locally connected: Q is diagonal, no cross-patch terms.
# Checked here: theory (`nkern lkr`) against the actual finite networks sampled by Langevin
# dynamics (`nkern langevin`, 2 chains) at three alpha = P/N, for dense and conv, erf, on
# Fashion-MNIST (T-shirt vs shirt, 14x14 pooled, 4 patches of 7x7 for conv) and on a synthetic
# local task (8x8 Gaussian images, 4 patches of 4x4, target erf of one shared filter on patches
# 0 and 3).  Tables in experiments/out/finite_*.tsv, Q heat maps finite_q_*.svg.
# Environment: P (train, default 60), NTEST (300), T (0.2), RUN / BURN (relaxation times, 8 / 2),
# CHAINS (2), DATASETS ("fmnist synth"), TAG (suffix of the table's name).
set -eu
cd "$(dirname "$0")/.."
NK=${NKERN:-build/nkern}
OUT=experiments/out; mkdir -p "$OUT"
P=${P:-60}; NTEST=${NTEST:-300}; T=${T:-0.2}; RUN=${RUN:-8}; BURN=${BURN:-2}
PY=${PY:-/usr/bin/python3}
CHAINS=${CHAINS:-2}; DATASETS=${DATASETS:-fmnist synth}; TAG=${TAG:-}

# the synthetic task: x ~ N(0, 1) on 8x8x1, y = erf(w . x_0 / 4) + erf(w . x_3 / 4), w ~ N(0, I_16)
$PY - "$OUT" "$P" "$NTEST" <<'EOF'
import sys, numpy as np
out, P, n0 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from math import erf
rng = np.random.default_rng(7)
w = rng.standard_normal(16)
def make(n):
    x = rng.standard_normal((n, 8, 8, 1))
    patch = lambda i: x[:, (i // 2) * 4:(i // 2) * 4 + 4, (i % 2) * 4:(i % 2) * 4 + 4, 0].reshape(n, 16)
    y = np.array([erf(a) + erf(b) for a, b in zip(patch(0) @ w / 4, patch(3) @ w / 4)])
    return x, y
for name, n in (("train", P), ("test", n0)):
    x, y = make(n)
    np.save(f"{out}/synth_x_{name}.npy", x); np.save(f"{out}/synth_y_{name}.npy", y)
EOF

FM="--fmnist 0,6 --n-train $P --n-test $NTEST --pool 2"
SY="--x $OUT/synth_x_train.npy --y $OUT/synth_y_train.npy --x-test $OUT/synth_x_test.npy --y-test $OUT/synth_y_test.npy"
W1=$((P * 2)); W2=$P; W3=$((P / 2))     # alpha = 0.5, 1, 2

echo "== theory: test loss vs width (inf = NNGP), lc included"
for data in $DATASETS; do
    if [ $data = fmnist ]; then D=$FM; MASK=7; else D=$SY; MASK=4; fi
    for net in dense conv lc; do
        echo "-- $data $net"
        $NK lkr $D --net $net --mask $MASK --T $T --widths $W3,$W2,$W1,$((P * 10)),inf \
            --out "$OUT/finite_lkr_${data}_${net}.tsv" $( [ $net = conv ] && echo --heatmap "$OUT/finite_q_${data}.svg" ) \
            2>/dev/null | tee "$OUT/finite_lkr_${data}_${net}.txt"
    done
done

echo "== theory vs Langevin ($CHAINS chains, erf)"
TAB=$OUT/finite_width$TAG.tsv
printf 'data\tnet\twidth\talpha\tlangevin_loss\tlangevin_err\ttheory_loss\tnngp_loss\trel_diff\tstep\trelax_times\tseconds\n' > "$TAB"
for data in $DATASETS; do
    if [ $data = fmnist ]; then D=$FM; MASK=7; else D=$SY; MASK=4; fi
    for net in dense conv; do
        nngp=$($NK lkr $D --net $net --mask $MASK --T $T --widths inf 2>/dev/null | awk '$1 == "inf" { print $9 }')
        for w in $W1 $W2 $W3; do
            r=$(nice -n 10 $NK langevin $D --net $net --mask $MASK --T $T --width $w --run $RUN --burn-in $BURN \
                --chains $CHAINS --threads 2 --theory --quiet 2>&1)
            echo "$r" | grep -v '^#' | sed "s/^/[$data $net N=$w] /"
            echo "$r" | awk -v data=$data -v net=$net -v w=$w -v P=$P -v nngp="$nngp" '
                /^width/ { lv = $7; le = $9 }
                /^step/ { st = $2; sub(",", "", st); rt = $11; sub(/\(/, "", rt); sec = $(NF - 1) }
                /^theory/ { th = $4 }
                END { printf "%s\t%s\t%d\t%.3g\t%.5f\t%.5f\t%.5f\t%.5f\t%+.2f%%\t%s\t%s\t%s\n", data, net, w, P / w, lv, le, th, nngp,
                      100 * (lv - th) / th, st, rt, sec }' >> "$TAB"
        done
    done
done
echo "== table ($TAB)"
column -t -s $'\t' "$TAB"

echo "== (a) dense: finite width = infinite width with readout prior variance Q/lambda1 (alpha = 2)"
for data in $DATASETS; do
    if [ $data = fmnist ]; then D=$FM; else D=$SY; fi
    fin=$($NK lkr $D --net dense --T $T --widths $W3 2>/dev/null | awk '$1 ~ /^[0-9]+$/ { print $5, $9 }')
    q=${fin% *}; lfin=${fin#* }
    same=$($NK lkr $D --net dense --T $T --lambda1 "$(awk -v q=$q 'BEGIN { printf "%.12g", 1 / q }')" --widths inf 2>/dev/null | awk '$1 == "inf" { print $9 }')
    echo "$data: N = $W3: Q = $q, loss $lfin; NNGP with lambda1 = 1/Q: $same"
done
echo "== (a)-(c) with the readout prior tuned: best test loss over lambda1 in {0.5,1,2,4,8,16}, N = $W3 vs infinite width"
for data in $DATASETS; do
    if [ $data = fmnist ]; then D=$FM; MASK=7; else D=$SY; MASK=4; fi
    for net in dense conv lc; do
        for l1 in 0.5 1 2 4 8 16; do
            $NK lkr $D --net $net --mask $MASK --T $T --lambda1 $l1 --widths $W3,inf 2>/dev/null | awk -v l=$l1 '$1 !~ /^#/ && $1 != "width" { print l, $1, $9 }'
        done | awk -v d=$data -v n=$net '
            $2 == "inf" { if (!bi || $3 < bi) { bi = $3; li = $1 } next }
            { if (!bf || $3 < bf) { bf = $3; lf = $1 } }
            END { printf "%s %-5s finite %.5f (lambda1 %s)  infinite %.5f (lambda1 %s)  finite/infinite %.3f\n", d, n, bf, lf, bi, li, bf / bi }'
    done
done

echo "== step size: synth conv, N = $W3, eta and eta/2 (the O(eta) bias of unadjusted Langevin)"
r=$(nice -n 10 $NK langevin $SY --net conv --mask 4 --T $T --width $W3 --run $RUN --burn-in $BURN --chains $CHAINS --threads 2 --quiet 2>&1)
eta=$(awk '/^step/ { s = $2; sub(",", "", s); print s }' <<<"$r")
echo "$r" | grep -E '^(width|step)' | sed 's/^/[eta] /'
half=$(awk -v e=$eta 'BEGIN { printf "%.6g", e / 2 }')
nice -n 10 $NK langevin $SY --net conv --mask 4 --T $T --width $W3 --run $RUN --burn-in $BURN --chains $CHAINS --threads 2 --step $half --quiet 2>&1 \
    | grep -E '^(width|step)' | sed 's/^/[eta\/2] /'
