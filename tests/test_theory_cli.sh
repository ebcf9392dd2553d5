#!/usr/bin/env bash
# test_theory_cli.sh -- `nkern theory` and `nkern spectrum` end to end: values that have closed
# forms (relu chi_1 = sw2/2, erf critical sw2 = pi/4 at sb2 = 0, the relu NTK's k(1) = 1),
# error messages and exit statuses, plots with and without gnuplot.
. "$(dirname "$0")/lib.sh"
NK=$NKERN

out=$($NK theory meanfield --act relu --sw2 1.5 --sb2 0)
approx "$(val chi1 <<<"$out")" 0.75 1e-12; ok $? "relu chi1 = sw2/2: $(val chi1 <<<"$out")"
[ "$(val phase <<<"$out")" = ordered ]; ok $? "relu sw2=1.5 ordered"
out=$($NK theory meanfield --act relu --sw2 2.5 --sb2 0)
[ "$(val phase <<<"$out")" = chaotic ]; ok $? "relu sw2=2.5 chaotic"
out=$($NK theory meanfield --act erf --sw2 3 --sb2 0.1)
c=$(val c_star <<<"$out"); awk -v c="$c" 'BEGIN { exit !(c > 0 && c < 1) }'; ok $? "erf chaotic c* in (0,1): $c"

$NK theory phase --act erf --sw2 0.5:2:4 --sb2 0:0.5:3 --out "$T/erf" 2>/dev/null; ok $? "phase runs"
[ "$(grep -vc '^#' "$T/erf.grid.tsv" | tr -d ' ')" -ge 12 ]; ok $? "phase grid has 12 points"
crit=$(awk '!/^#/ && $1 == 0 { print $2 }' "$T/erf.critical.tsv")
approx "$crit" 0.785398163 1e-6; ok $? "erf critical sw2 at sb2=0 is pi/4: $crit"

$NK theory phase --sw2 0.5:2:4 --sb2 0:0.5:3 --plot "$T/p.pdf" >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "--plot .pdf refused with 2"
msg=$(PATH=/nonexistent "$(command -v "$NK" || echo "$PWD/$NK")" theory phase --sw2 0.5:2:4 --sb2 0:0.5:3 --out "$T/nog" --plot "$T/nog.svg" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && grep -q "gnuplot is not installed" <<<"$msg" && [ -s "$T/nog.grid.tsv" ]; ok $? "missing gnuplot: rc $rc, '$msg', data still written"
if command -v gnuplot >/dev/null; then
    $NK theory phase --sw2 0.5:2:4 --sb2 0:0.5:3 --out "$T/g" --plot "$T/g.svg" >/dev/null 2>&1 && grep -q "<svg" "$T/g.svg"; ok $? "svg written"
fi
msg=$($NK theory meanfield --act rellu 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "rellu" <<<"$msg"; ok $? "unknown activation: rc $rc '$msg'"

write_npy "$T/nonsym.npy" "4, 4" '$i'
msg=$($NK spectrum --kernel "$T/nonsym.npy" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "nonsym.npy: not symmetric" <<<"$msg"; ok $? "non-symmetric: rc $rc '$msg'"
write_npy "$T/rect.npy" "3, 4" '1'
msg=$($NK spectrum --kernel "$T/rect.npy" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "rect.npy: shape (3, 4) is not square" <<<"$msg"; ok $? "rectangular: rc $rc '$msg'"

write_npy "$T/x.npy" "120, 4" 'rand() - 0.5'
$NK kernel --arch "dense relu dense" --x1 "$T/x.npy" --get ntk --out "$T/K.npy" --quiet; ok $? "kernel"
out=$($NK spectrum --kernel "$T/K.npy" --top 2 --out "$T/eig.tsv" --vectors "$T/V.npy")
ok $? "spectrum of a Gram"
[ "$(val n <<<"$out")" = 120 ] && [ "$(grep -vc '^#' "$T/eig.tsv")" = 120 ] && [ -s "$T/V.npy" ]; ok $? "120 eigenvalues, vectors written"
lmax=$(val lambda_max <<<"$out"); top=$(awk '!/^#/ && $1 == 1 { print $2 }' "$T/eig.tsv")
approx "$lmax" "$top" 1e-8; ok $? "lambda_max $lmax = first of the table $top"
tr=$(val trace <<<"$out"); sum=$(awk '!/^#/ { s += $2 } END { printf "%.12g", s }' "$T/eig.tsv")
approx "$tr" "$sum" 1e-6; ok $? "trace $tr = sum of eigenvalues $sum"

out=$($NK spectrum --sphere --arch "dense relu dense" --dim 3 --kmax 60)
ok $? "sphere"
k1=$(sed -n 's/^# k(1) = \([0-9.e+-]*\),.*/\1/p' <<<"$out")
approx "$k1" 1 1e-12; ok $? "relu NTK k(1) = 1: $k1"
cum=$(awk '!/^#/ && $1 == 60 { print $5 }' <<<"$out")
awk -v c="$cum" 'BEGIN { exit !(c > 0.99 && c < 1) }'; ok $? "cumulative fraction at k=60: $cum"
$NK spectrum --sphere --arch "conv(3) relu flatten dense" --dim 3 >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "conv spec on the sphere refused"
$NK spectrum --sphere --arch "dense relu dense" >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "missing --dim refused"

# products of spheres: an additive kernel (1/m) sum_i kappa(t_i) has no mixed eigenvalues
out=$($NK spectrum --patches 3 --dim 4 --kmax 3 --arch "conv(1) relu flatten dense" --out "$T/ps.tsv")
ok $? "patches"
mixed=$(awk -F'\t' '!/^#/ && $3 >= 2 { m = ($4 < 0 ? -$4 : $4); if (m > max) max = m } END { printf "%.3g", max + 0 }' "$T/ps.tsv")
awk -v m="$mixed" 'BEGIN { exit !(m < 1e-12) }'; ok $? "additive kernel: largest mixed eigenvalue $mixed"
$NK spectrum --patches 3 --dim 4 --kmax 2 --arch "conv(1) relu gap dense" >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "gap refused on a product of spheres"

out=$($NK theory depth --data "$T/x.npy" --families mlp --n 32 --depths 1,8 --act erf --sw2 1 --sb2 0.1 --out "$T/d.tsv")
ok $? "depth runs"
[ "$(grep -vc '^#' "$T/d.tsv")" = 2 ]; ok $? "two depth rows"
$NK theory depth --data "$T/x.npy" --n 200 >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "--n larger than the data refused"

summary test_theory_cli.sh
