#!/usr/bin/env bash
# test_mc_cli.sh -- `nkern mc` end to end: output files, the comparison with the exact kernel for
# a one-hidden-layer network (unbiased: only the sampling error, so |z| stays small), the same
# files with 1 and 2 threads, error messages and exit statuses.
. "$(dirname "$0")/lib.sh"
NK=$NKERN

$NK synth --patches 4 --dim 3 --n 5 --target 0:1 --x "$T/x.npy" >/dev/null 2>&1; ok $? "synth data"
$NK mc --arch "conv(2) relu flatten dense" --x1 "$T/x.npy" --samples 20 --width 8 --get both --se --out "$T/k" --quiet
ok $? "mc runs"
for f in k.nngp.npy k.ntk.npy k.nngp.se.npy k.ntk.se.npy; do [ -s "$T/$f" ]; ok $? "$f written"; done
$NK mc --arch "conv(2) relu flatten dense" --x1 "$T/x.npy" --samples 20 --width 8 --get ntk --out "$T/one.npy" --quiet --threads 2
cmp -s "$T/one.npy" "$T/k.ntk.npy"; ok $? "--get ntk with 2 threads = --get both with all threads, byte for byte"
$NK mc --arch "conv(2) relu flatten dense" --x1 "$T/x.npy" --samples 7,20 --width 8 --get ntk --out "$T/sn.npy" --quiet
cmp -s "$T/sn.npy" "$T/k.ntk.npy"; ok $? "--samples 7,20: the final estimate as --samples 20"
$NK mc --arch "conv(2) relu flatten dense" --x1 "$T/x.npy" --samples 7 --width 8 --get ntk --out "$T/s7.npy" --quiet
cmp -s "$T/sn.s7.npy" "$T/s7.npy"; ok $? "--samples 7,20: sn.s7.npy = the estimate of --samples 7"
out=$($NK mc --arch "b=0.3 flatten dense erf dense" --x1 "$T/x.npy" --samples 300 --width 32 --get both --compare --quiet 2>&1)
ok $? "compare runs"
for g in nngp ntk; do
    z=$(awk -v g="$g:" '$1 == g { print $9 }' <<<"$out")
    awk -v z="$z" 'BEGIN { exit !(z != "" && z < 5) }'; ok $? "$g: one hidden layer within 5 standard errors of the exact kernel (max z $z)"
done

err() { # EXPECTED_STATUS PATTERN ARGS...: the status and a message matching PATTERN
    local want=$1 pat=$2; shift 2
    local msg; msg=$($NK mc "$@" 2>&1 >/dev/null); local rc=$?
    [ $rc -eq "$want" ] && grep -q "$pat" <<<"$msg"; ok $? "mc $* -> $rc: $msg"
}
err 2 "missing --arch" --x1 "$T/x.npy" --out "$T/o.npy"
err 2 "samples" --arch "dense relu dense" --x1 "$T/x.npy" --samples 0 --out "$T/o.npy"
err 2 "column 9 (dense): width 2.5" --arch "flatten dense(2.5) relu dense" --x1 "$T/x.npy" --out "$T/o.npy" --quiet
err 2 "get" --arch "dense relu dense" --x1 "$T/x.npy" --get both2 --out "$T/o.npy"
err 2 "compare needs" --arch "dense relu dense" --x1 "$T/x.npy" --samples 1 --compare
err 2 "must increase" --arch "dense relu dense" --x1 "$T/x.npy" --samples 20,7 --out "$T/o.npy"
err 2 "missing --out" --arch "dense relu dense" --x1 "$T/x.npy"
[ ! -e "$T/o.npy" ]; ok $? "no output file after errors"
summary test_mc_cli.sh
