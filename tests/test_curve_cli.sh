#!/usr/bin/env bash
# test_curve_cli.sh -- `nkern synth` and `nkern curve` end to end: shapes of the written arrays
# (read from the .npy headers), the exact target power,
# usage errors with exit status 2, a learning curve table with measured and predicted columns,
# and the plot.
. "$(dirname "$0")/lib.sh"
NK=$NKERN

out=$($NK synth --patches 4 --dim 3 --n 500 --target 0:2,1:2 --x "$T/x.npy" --y "$T/y.npy"); ok $? "synth runs"
[ "$(npy_shape "$T/x.npy")" = "(500, 4, 3)" ]; ok $? "x shape $(npy_shape "$T/x.npy")"
[ "$(npy_shape "$T/y.npy")" = "(500,)" ]; ok $? "y shape $(npy_shape "$T/y.npy")"
# P_2 x P_2 on S^2: 1 / (N(3,2) N(3,2)) = 1/25
[ "$(val target_power <<<"$out")" = 0.04 ]; ok $? "target power $(val target_power <<<"$out")"
$NK synth --patches 4 --dim 3 --n 10 --target 0:1,3:1 --flat --x "$T/xf.npy" >/dev/null; ok $? "synth --flat"
[ "$(npy_shape "$T/xf.npy")" = "(10, 12)" ]; ok $? "flat shape $(npy_shape "$T/xf.npy")"
# the same seed gives the same bytes
$NK synth --patches 4 --dim 3 --n 500 --target 0:2,1:2 --x "$T/x2.npy" >/dev/null && cmp -s "$T/x.npy" "$T/x2.npy"; ok $? "reproducible"
$NK synth --patches 4 --dim 3 --n 500 --target 0:2,1:2 --sample-seed 9 --x "$T/x3.npy" >/dev/null && ! cmp -s "$T/x.npy" "$T/x3.npy"; ok $? "sample seed changes x"

for bad in "--target 4:1" "--target 0:2,0:1" "--target 0:" "--target 0:1 --noise -1" "--dim 1 --target 0:1"; do
    msg=$($NK synth --patches 4 --dim 3 --n 10 --x "$T/b.npy" $bad 2>&1); rc=$?
    [ $rc -eq 2 ] && grep -q "nkern: error:" <<<"$msg"; ok $? "synth $bad: rc $rc '$msg'"
done
msg=$($NK synth --patches 4 --dim 3 --n 10 --target 0:1 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q -- "--x" <<<"$msg"; ok $? "missing --x: rc $rc"

CNN="conv(1) relu conv(2,stride=2,pad=valid) relu conv(2,stride=2,pad=valid) relu flatten dense"
out=$($NK curve --arch "$CNN" --patches 4 --dim 3 --target 0:2,1:2 --n 20,200 --seeds 2 --test 200 --threads 1 --out "$T/c.tsv"); ok $? "curve runs"
[ "$(grep -vc '^#' <<<"$out")" -eq 2 ] && [ "$(grep -vc '^#' "$T/c.tsv")" -eq 2 ]; ok $? "two rows"
# measured and predicted within a factor 1.5 at n = 200
awk '!/^#/ && $1 == 200 { r = $2 / $4; exit !(r > 1/1.5 && r < 1.5) }' <<<"$out"; ok $? "measured vs predicted at n=200: $(grep '^200' <<<"$out")"
msg=$($NK curve --arch "conv(1) relu gap dense" --patches 4 --dim 3 --target 0:1 --n 10 --seeds 1 --test 20 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "patch cosines" <<<"$msg"; ok $? "gap refused: rc $rc '$msg'"
msg=$($NK curve --arch "$CNN" --patches 4 --dim 3 --target 0:2 --kmax 1 --n 10 --seeds 1 --test 20 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "kmax" <<<"$msg"; ok $? "kmax below target degree: rc $rc '$msg'"
msg=$($NK curve --arch "$CNN" --patches 4 --dim 3 --target 0:2 --get foo 2>&1); rc=$?
[ $rc -eq 2 ]; ok $? "bad --get: rc $rc"
if command -v gnuplot >/dev/null; then
    $NK curve --arch "$CNN" --arch "flatten dense relu dense" --patches 4 --dim 3 --target 0:1 --n 10,40 --seeds 1 --test 50 --get nngp --plot "$T/c.svg" >/dev/null 2>&1 && grep -q "<svg" "$T/c.svg"; ok $? "plot written"
fi
summary test_curve_cli.sh
