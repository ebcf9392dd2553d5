# tests/lib.sh -- what the shell tests share.  Source it first thing:
#     . "$(dirname "$0")/lib.sh"
# It moves to the repository root, names the binaries (overridable from the environment), makes a
# temporary directory $T removed on exit, and keeps the pass/fail counts that `summary` reports
# on the last line tests/run.sh reads ("NAME: N passed, N failed").
set -u
cd "$(dirname "$0")/.." || exit 2
NKERN=${NKERN:-build/nkern}
NKERN_SAN=${NKERN_SAN:-build/nkern-san}
PY=${PY:-/usr/bin/python3}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0

# ok: one check passed.  ok STATUS WHAT: a check passed if STATUS is 0, else failed, named WHAT.
ok() {
    if [ $# -eq 0 ] || [ "$1" -eq 0 ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: ${*:2}"; fi
}
# bad WHAT: one check failed
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
# check WHAT COMMAND...: the command's exit status is the check
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
# approx A B TOL: |A - B| <= TOL
approx() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }
# val KEY: the second field of the line whose first field is KEY (stdin)
val() { awk -v k="$1" '$1 == k { print $2 }'; }
# npy_shape FILE: the shape field of a .npy header, e.g. "(500, 4, 3)"
npy_shape() { head -c 200 "$1" | tr -d '\0' | grep -ao "'shape': ([0-9, ]*)" | sed "s/'shape': //"; }
# write_npy FILE SHAPE EXPR: a float64 .npy of the given shape ("30, 4" or "30,") without numpy;
# EXPR (perl) gives each element from $i, its flat index in C order, and $c, the size of the last
# axis (so $i / $c and $i % $c are row and column of a matrix).  rand() is seeded.
write_npy() {
    perl -e '
        my ($f, $shape, $expr) = @ARGV;
        srand(7);
        my @dims = grep { length } split /\s*,\s*/, $shape;
        my ($n, $c) = (1, $dims[-1]);
        $n *= $_ for @dims;
        my $hdr = "{\x27descr\x27: \x27<f8\x27, \x27fortran_order\x27: False, \x27shape\x27: ($shape), }";
        my $pad = (64 - (10 + length($hdr) + 1) % 64) % 64;
        $hdr .= " " x $pad . "\n";
        open(my $fh, ">:raw", $f) or die "$f: $!";
        print $fh "\x93NUMPY\x01\x00" . pack("v", length($hdr)) . $hdr;
        for my $i (0 .. $n - 1) { print $fh pack("d<", eval $expr); }
        close $fh;' "$@"
}
# summary NAME: the last line, and the exit status (0 when nothing failed)
summary() { echo "$1: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; }
