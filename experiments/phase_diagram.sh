#!/usr/bin/env bash
# Claim (Schoenholz et al. 2017; SCIENCE.md section 4): the order-to-chaos transition chi_1 = 1.
#   relu, sb2 = 0: q' = sw2 q / 2, chi_1 = sw2 / 2, critical at sw2 = 2 for every sb2;
#   erf, sb2 = 0: q* = 0 in the ordered phase, chi_1 = sw2 * 4/pi, critical at sw2 = pi/4;
#   tanh: critical line through sw2 ~ 1.76 at sb2 = 0.05 (the paper's running example);
#   depth scale xi_c = -1/log chi_c diverges at the critical line.
set -eu
cd "$(dirname "$0")/.."
NK=${NKERN:-build/nkern}
OUT=experiments/out; mkdir -p "$OUT"
for act in relu erf tanh; do
    $NK theory phase --act $act --sw2 0.25:4:64 --sb2 0:2:41 --out "$OUT/phase_$act" --plot "$OUT/phase_$act.svg"
    awk -v a=$act '!/^#/ && ($1 == 0 || $1 == 0.05 || $1 == 1) { printf "%-5s critical sw2 at sb2 = %-5s %.6f\n", a, $1, $2 }' "$OUT/phase_$act.critical.tsv"
done
echo "reference: relu 2, erf at sb2=0 pi/4 = $(awk 'BEGIN { printf "%.6f", atan2(0, -1) / 4 }'), tanh at sb2=0.05 ~1.76"
echo "depth scale xi_c of tanh, sb2 = 0.05, approaching the critical sw2 from both sides:"
for sw2 in 1.2 1.6 1.7 1.75 1.76 1.77 1.8 2.0 3.0; do
    $NK theory meanfield --act tanh --sw2 $sw2 --sb2 0.05 | awk -v s=$sw2 '{ v[$1] = $2 } END { printf "  sw2 %-5s chi1 %-10.6f c* %-10.6f xi_c %-10.4g %s\n", s, v["chi1"], v["c_star"], v["xi_c"], v["phase"] }'
done
