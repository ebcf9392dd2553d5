#!/usr/bin/env bash
# test_finite_cli.sh -- `nkern lkr` and `nkern langevin` end to end: the table (Q = 1 and no
# iterations at infinite width, saddle residuals <= 1e-10, lc's Q diagonal), the output files,
# and the error messages and exit statuses of bad input.
. "$(dirname "$0")/lib.sh"
NK=$NKERN
write_npy "$T/x.npy" "30, 4, 4, 1" 'sin(1.7 * $i) + cos(0.3 * $i * $i)'
write_npy "$T/y.npy" "30," '($i % 3 == 0) ? 1 : -1'
write_npy "$T/xt.npy" "10, 4, 4, 1" 'sin(0.9 * $i + 1) + cos(0.2 * $i * $i)'
write_npy "$T/yt.npy" "10," '($i % 2 == 0) ? 1 : -1'
write_npy "$T/y_short.npy" "29," '1'
D="--x $T/x.npy --y $T/y.npy --x-test $T/xt.npy --y-test $T/yt.npy"

for net in dense conv lc; do
    out=$($NK lkr $D --net $net --mask 2 --widths 5,15,inf --out "$T/$net.tsv" --q-out "$T/q_$net.npy" --pred-out "$T/p_$net.tsv" 2>&1)
    ok $? "lkr $net runs: $out"
    awk '$1 == "inf" { exit !($3 == 0 && $5 == 1) }' <<<"$out"; ok $? "$net: Q = 1 with no iterations at infinite width"
    awk '$1 ~ /^[0-9]+$/ { n++; if (!($4 <= 1e-10)) bad = 1 } END { exit !(n == 2 && !bad) }' <<<"$out"
    ok $? "$net: residuals <= 1e-10"
    [ "$(wc -l < "$T/$net.tsv")" -eq 4 ]; ok $? "$net table has a header and 3 rows"
    [ "$(wc -l < "$T/p_$net.tsv")" -eq 11 ]; ok $? "$net predictions: header and 10 rows"
    [ -s "$T/q_$net.npy" ]; ok $? "$net Q written"
done
awk '$1 ~ /^[0-9]+$/ { exit !($6 == 0) }' "$T/lc.tsv"; ok $? "lc: Q off-diagonal is zero"
awk -F'\t' '$1 == "5" { exit !($6 != 0) }' "$T/conv.tsv"; ok $? "conv: Q off-diagonal is not zero"
if command -v gnuplot >/dev/null; then
    $NK lkr $D --net conv --mask 2 --widths 5 --heatmap "$T/q.svg" >/dev/null 2>&1 && [ -s "$T/q.svg" ]; ok $? "heat map written"
fi

out=$($NK langevin $D --net conv --mask 2 --width 6 --T 0.5 --run 1 --burn-in 0.5 --theory --quiet 2>&1)
ok $? "langevin runs: $out"
grep -q '^width 6 alpha 5: test loss' <<<"$out"; ok $? "langevin loss line"
grep -q '^theory: test loss' <<<"$out"; ok $? "langevin --theory line"

expect_usage() { # expect exit 2 and an "nkern: error:" line naming $2
    local msg; msg=$("${@:3}" 2>&1 >/dev/null); local rc=$?
    [ $rc -eq 2 ] && grep -q "nkern: error:.*$2" <<<"$msg"; ok $? "$1 (exit $rc: $msg)"
}
expect_usage "relu refused" "odd" $NK lkr $D --act relu
expect_usage "mask must divide" "mask" $NK lkr $D --net conv --mask 3
expect_usage "targets count" "targets" $NK lkr --x "$T/x.npy" --y "$T/y_short.npy" --x-test "$T/xt.npy" --y-test "$T/yt.npy"
expect_usage "data required" "data" $NK lkr --net dense
expect_usage "width required" "width" $NK langevin $D
expect_usage "negative T" "T" $NK lkr $D --T -1
expect_usage "bad widths" "widths" $NK lkr $D --widths 3,x
summary test_finite_cli.sh
