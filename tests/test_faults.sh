#!/usr/bin/env bash
# Issue 16, item by item, through the CLI: every bad input exits non-zero with "nkern: error:",
# the documented status and a message naming the cause; no output file and no temporary is left;
# signals during the write leave nothing; a resumed checkpoint is bit-identical.  The library
# side of the non-finite cases is tests/test_faults.c.
. "$(dirname "$0")/lib.sh"
N=$NKERN
ROOT=$PWD
tried=0; clear=0

"$PY" - "$T" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]; rng = np.random.default_rng(3)
np.save(f"{d}/x.npy", rng.standard_normal((6, 5)))
np.save(f"{d}/img.npy", rng.standard_normal((4, 6, 6, 2)))
np.save(f"{d}/c.npy", rng.standard_normal((20, 4, 4, 1)))
np.save(f"{d}/img28.npy", rng.standard_normal((8, 28, 28, 1)))
np.save(f"{d}/raw.npy", rng.integers(0, 256, (2, 6, 6, 1)).astype(np.uint8))
x = rng.standard_normal((6, 5)); x[3, 2] = 1e200; np.save(f"{d}/big.npy", x)
x = rng.standard_normal((6, 5)); x[4, 1] = np.nan; np.save(f"{d}/nan.npy", x)
K = np.eye(4); K[1, 1] = np.inf; np.save(f"{d}/kinf.npy", K)
X = rng.standard_normal((30, 5)); np.save(f"{d}/ktr.npy", X[:20] @ X[:20].T / 5)
np.save(f"{d}/kte.npy", X[20:] @ X[:20].T / 5)
np.save(f"{d}/ytr.npy", rng.integers(0, 3, 20).astype(float))
np.save(f"{d}/y6.npy", np.arange(6) % 3 * 1.0)
np.save(f"{d}/yte9.npy", rng.integers(0, 3, 9).astype(float))
np.save(f"{d}/yte10.npy", rng.integers(0, 3, 10).astype(float))
PYEOF

# refuse NAME STATUS PATTERN FILES -- command...: a bad input.  It must exit STATUS with
# "nkern: error:" and PATTERN, and none of FILES (space-separated; "-" for none) nor any
# temporary may exist afterwards.
refuse() {
    local name=$1 want=$2 pat=$3 files=$4; shift 4
    tried=$((tried+1))
    local out; out=$("$@" 2>&1); local rc=$?
    local left; left=$(ls "$T" | grep '\.tmp\.' || true)
    for f in $files; do [ "$f" != - ] && [ -e "$f" ] && left="$left $f"; done
    if [ "$rc" -eq 0 ]; then bad "$name: SILENT (exit 0): $out"; return; fi
    if [ "$rc" -ne "$want" ]; then bad "$name: exit $rc, expected $want: $out"; return; fi
    if ! grep -q "nkern: error:" <<<"$out" || ! grep -qE -- "$pat" <<<"$out"; then bad "$name: output lacks /$pat/: $out"; return; fi
    if [ -n "$left" ]; then bad "$name: left $left"; return; fi
    clear=$((clear+1)); ok
}
check() { if eval "$2"; then ok; else bad "$1"; fi; }

O=$T/out.npy
# ---- item 1: the closed-form reference check, whose ReLU entry at theta = pi is 0, on the
# Haswell BLAS kernel (where it failed) and on the machine's own
for core in Haswell ""; do
    out=$(OPENBLAS_CORETYPE=$core "$PY" -c "import sys; sys.path.insert(0, 'tests'); import test_ref_selfcheck as t; t.check_closed_forms(); sys.exit(t.failed)" 2>&1)
    check "closed forms with OPENBLAS_CORETYPE='$core': $out" "[ \$? -eq 0 ] && [ \$(grep -c '^ok' <<<"\$out") -eq 6 ]"
done
# ---- item 2: non-finite results are errors, nothing is written
refuse "w=1e200" 2 "column 9 \(dense\).*overflows" "$O" $N kernel --arch 'w=1e200 dense relu dense' --x1 $T/x.npy --out $O
refuse "10000 layers ntk" 1 "ntk of pair \(0, 0\).*overflows to inf at op [0-9]+ \(dense" "$O" \
    $N kernel --arch 'w=1.5 [dense relu]*10000 dense' --x1 $T/x.npy --out $O --get ntk
refuse "10000 layers both" 1 "overflows to inf at op" "$T/P.nngp.npy $T/P.ntk.npy" \
    $N kernel --arch 'w=1.5 [dense relu]*10000 dense' --x1 $T/x.npy --out $T/P --get both
refuse "w=1e30 --f32" 1 "beyond float32's range.*drop --f32" "$O" $N kernel --arch 'w=1e30 dense relu dense' --x1 $T/x.npy --out $O --f32
refuse "w=1e30 --f32 both" 1 "beyond float32's range" "$T/P.nngp.npy $T/P.ntk.npy" \
    $N kernel --arch 'w=1e30 dense relu dense' --x1 $T/x.npy --out $T/P --get both --f32
refuse "input 1e200" 2 "big.npy: sample 3, element 2.*1e\+200" "$O" $N kernel --arch 'dense relu dense' --x1 $T/big.npy --out $O
refuse "input NaN" 2 "nan.npy: sample 4, element 1 is NaN" "$O" $N kernel --arch 'dense relu dense' --x1 $T/nan.npy --out $O
refuse "x2 1e200" 2 "big.npy: sample 3" "$O" $N kernel --arch 'dense relu dense' --x1 $T/x.npy --x2 $T/big.npy --out $O
refuse "CNN overflow" 1 "op 3 \(conv" "$O" $N kernel --arch 'w=1e100 conv(3) relu conv(3) relu gap dense' --x1 $T/img.npy --out $O
refuse "CNN overflow f32" 1 "op 3 \(conv" "$O" $N kernel --arch 'w=1e100 conv(3) relu conv(3) relu flatten dense' --x1 $T/img.npy --out $O --precision f32
refuse "erf after overflow" 1 "op 2 \(dense" "$O" $N kernel --arch 'w=1e100 dense dense erf dense' --x1 $T/x.npy --out $O
refuse "checkpointed overflow" 1 "overflows" "$O" $N kernel --arch 'w=1e100 conv(3) relu conv(3) relu gap dense' --x1 $T/img.npy --out $O --checkpoint $T/ckbad
refuse "spectrum of Inf kernel" 2 "kinf.npy: sample 1, element 1" - $N spectrum --kernel $T/kinf.npy
refuse "classify overflow" 1 "overflows" "$T/pred.npy" $N classify --data npy:$T/x.npy,$T/y6.npy --train 3 --test 2 \
    --arch 'w=1e100 dense dense dense' --out $T/pred.npy
rm -rf "$T/ckbad"

# ---- item 4: transactional outputs, signals, the output directory checked first
refuse "missing out dir" 2 "--out $T/nodir/k.npy: the directory $T/nodir does not exist" - \
    timeout 20 $N kernel --arch '[conv(3) tanh]*20 gap dense' --x1 $T/img.npy --out $T/nodir/k.npy
refuse "out is a dir" 2 "is a directory" - $N kernel --arch 'dense' --x1 $T/x.npy --out $T
refuse "out dir is a file" 2 "is not a directory|does not exist" - $N kernel --arch 'dense' --x1 $T/x.npy --out $T/x.npy/k.npy
refuse "predict out dir" 2 "does not exist" - $N predict --k-train $T/ktr.npy --k-test $T/kte.npy --y $T/ytr.npy --out $T/no/p
refuse "synth out dir" 2 "--x $T/no/x.npy: the directory" - $N synth --patches 2 --dim 3 --n 5 --target 0:1 --x $T/no/x.npy
refuse "plot dir" 2 "--plot $T/no/p.svg" - $N theory phase --act erf --sw2 1:2:2 --sb2 0:0.1:2 --plot $T/no/p.svg
# an old pair P.nngp.npy / P.ntk.npy, then runs killed while the new temporaries exist: the old
# pair is untouched and no temporary is left (NK_TXN_PAUSE holds the commit open)
$N kernel --arch 'dense relu dense' --x1 $T/x.npy --out $T/P --get both --quiet
old=$(cat $T/P.nngp.npy $T/P.ntk.npy | md5sum)
# (a background job of a script starts with SIGINT ignored: this restores the default first)
DFL=("$PY" -c 'import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP): signal.signal(s, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])')
for sig in TERM INT HUP; do
    NK_TXN_PAUSE=5 "${DFL[@]}" $N kernel --arch 'w=1.3 dense relu dense' --x1 $T/x.npy --out $T/P --get both --quiet 2>/dev/null &
    pid=$!
    for _ in $(seq 50); do ls $T | grep -q 'P.ntk.npy.tmp' && break; sleep 0.1; done
    check "SIG$sig: both temporaries written before the renames" "ls $T | grep -q 'P.nngp.npy.tmp' && ls $T | grep -q 'P.ntk.npy.tmp'"
    kill -$sig $pid; wait $pid 2>/dev/null; rc=$?
    check "SIG$sig: killed (status $rc)" "[ $rc -gt 128 ]"
    check "SIG$sig: no temporary left" "! ls $T | grep -q '\.tmp\.'"
    check "SIG$sig: the old pair untouched" "[ \"\$(cat $T/P.nngp.npy $T/P.ntk.npy | md5sum)\" = \"$old\" ]"
done
# killed during the computation (before any file): nothing appears
timeout -s INT 1 "${DFL[@]}" $N kernel --arch 'quad=256 [conv(3) tanh]*30 gap dense' --x1 $T/img.npy --out $T/slow.npy --quiet 2>/dev/null
check "SIGINT while computing: no output" "[ ! -e $T/slow.npy ] && ! ls $T | grep -q '\.tmp\.'"
# a completed run replaces the pair together
$N kernel --arch 'w=1.3 dense relu dense' --x1 $T/x.npy --out $T/P --get both --quiet
check "a finished run writes the new pair" "[ \"\$(cat $T/P.nngp.npy $T/P.ntk.npy | md5sum)\" != \"$old\" ]"
# a checkpoint strip's commit interrupted: no temporary in the directory
NK_TXN_PAUSE=5 $N kernel --arch 'conv(3) relu gap dense' --x1 $T/c.npy --out $T/ck.npy --checkpoint $T/ckint --quiet 2>/dev/null &
pid=$!
for _ in $(seq 50); do ls $T/ckint 2>/dev/null | grep -q '\.tmp\.' && break; sleep 0.1; done
kill -TERM $pid; wait $pid 2>/dev/null
check "checkpoint interrupted: no temporary" "! ls $T/ckint | grep -q '\.tmp\.' && [ ! -e $T/ck.npy ]"
rm -rf $T/ckint

# ---- item 5: silently accepted mismatches
refuse "labels one short" 2 "--labels-test .*yte9.npy: 9 labels, but .*kte.npy has 10 test samples" - \
    $N predict --k-train $T/ktr.npy --k-test $T/kte.npy --y $T/ytr.npy --labels-test $T/yte9.npy --one-hot --out $T/pr
check "labels of the right length accepted" "$N predict --k-train $T/ktr.npy --k-test $T/kte.npy --y $T/ytr.npy --labels-test $T/yte10.npy --one-hot --reg 1e-3 --out $T/pr >/dev/null && [ -e $T/pr.mean.npy ]"
refuse "synth x = y" 2 "--y .*same file as --x" "-" $N synth --patches 2 --dim 3 --n 5 --target 0:1 --x $T/s.npy --y $T/s.npy
refuse "synth x = ./y" 2 "same file" "-" $N synth --patches 2 --dim 3 --n 5 --target 0:1 --x $T/s.npy --y $T/./s.npy
refuse "repeated --x1" 2 "--x1 is given twice" "$O" $N kernel --arch 'dense' --x1 $T/x.npy --x1 $T/img.npy --out $O
refuse "repeated --out" 2 "--out is given twice" "$O" $N kernel --arch 'dense' --x1 $T/x.npy --out $O --out $T/o2.npy
refuse "--n2 without --x2" 2 "--n2 3: given without --x2" "$O" $N kernel --arch 'dense' --x1 $T/x.npy --n2 3 --out $O
refuse "repeated --reg" 2 "--reg is given twice" - $N predict --k-train $T/ktr.npy --k-test $T/kte.npy --y $T/ytr.npy --reg 1 --reg 2 --out $T/pr2

# ---- item 6: a wrapped message comes out once, whole
out=$($N spectrum --sphere --arch 'conv(3) relu gap dense' --dim 3 --kmax 4 2>&1)
check "wrapped message once: $out" "[ \$(grep -o 'does not take vector inputs' <<<\"\$out\" | wc -l) -eq 1 ] && grep -q 'conv' <<<\"\$out\""

# ---- item 7
for cmd in "kernel --arch dense --x1 $T/none.npy --out $O" "spectrum --kernel $T/none.npy" \
           "predict --k-train $T/none.npy --k-test $T/kte.npy --y $T/ytr.npy --out $T/pr3" \
           "classify --data npy:$T/none.npy,$T/ytr.npy --train 3 --test 2 --arch dense" \
           "theory depth --data $T/none.npy --n 4 --depths 1"; do
    refuse "missing file: ${cmd%% *}" 2 "none.npy" - $N $cmd
done
# the checkpoint's progress line: no \r when stderr is not a terminal
NK_CHECKPOINT_STOP_AFTER=3 $N kernel --arch 'conv(3) relu gap dense' --x1 $T/c.npy --out $T/r.npy --get both --checkpoint $T/ck 2>$T/err.txt
check "checkpoint log without \\r" "! grep -q \$'\\r' $T/err.txt"
# a corrupted strip of the right shape: detected by its CRC-32, recomputed; the resumed matrix
# is bit-identical to one computed in one go
"$PY" -c "import numpy as np; a = np.load('$T/ck/strip0001.ntk.npy'); a[0, 1] *= 1 + 1e-12; np.save('$T/ck/strip0001.ntk.npy', a)"
$N kernel --arch 'conv(3) relu gap dense' --x1 $T/c.npy --out $T/r.npy --get both --checkpoint $T/ck 2>$T/err.txt
check "corrupted strip recomputed" "grep -q 'strip 1 does not match its checksum' $T/err.txt && grep -q '(2 resumed)' $T/err.txt"
$N kernel --arch 'conv(3) relu gap dense' --x1 $T/c.npy --out $T/whole.npy --get both --quiet
check "resume bit-identical" "cmp -s $T/r.nngp.npy $T/whole.nngp.npy && cmp -s $T/r.ntk.npy $T/whole.ntk.npy && [ ! -d $T/ck ]"
# curve --plot keeps its legend with long spec names
if command -v gnuplot >/dev/null; then
    $N curve --arch 'conv(1) relu conv(2,stride=2,pad=valid) relu conv(2,stride=2,pad=valid) relu flatten dense' \
        --arch 'flatten dense relu dense relu dense relu dense relu dense' --patches 4 --dim 3 --target 0:2,1:2 \
        --n 10,20 --seeds 1 --test 50 --plot $T/curve.svg >/dev/null 2>&1
    check "curve legend: both long names" "grep -q 'measured: conv(1) relu conv(2,stride=2' $T/curve.svg && grep -q 'predicted: flatten dense relu' $T/curve.svg"
fi
# theory depth with the README's bare Fashion-MNIST file name, from another directory
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    out=$(cd $T && $ROOT/$N theory depth --data train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz --n 8 \
          --n-test 8 --depths 1 --families mlp --act erf --sw2 3 2>&1)
    check "theory depth, bare file name: $out" "grep -q 'reading /usr/share/datasets/fashion-mnist/train-images' <<<\"\$out\" && grep -q '^mlp' <<<\"\$out\""
fi

# ---- item 8: estimated times before paying
out=$($N arch '[conv(3) relu]*5 gap dense' --input 28x28x1 --n 10000 --threads 2)
check "arch: wall time in h/min: $out" "grep -qE 'estimated wall time for 10000 x 10000: [0-9]+ h [0-9]{2} min on 1 rank x 2 threads' <<<\"\$out\""
h1=$($N arch '[conv(3) relu]*5 gap dense' --input 28x28x1 --n 10000 --threads 2 | sed -nE 's/.*\(([0-9.e+]+) core-hours.*/\1/p')
out4=$($N arch '[conv(3) relu]*5 gap dense' --input 28x28x1 --n 10000 --threads 2 --ranks 4)
check "arch --ranks 4: the same core-hours, a quarter of the wall time" "grep -q \"($h1 core-hours\" <<<\"\$out4\" && grep -qE 'on 4 ranks x 2 threads' <<<\"\$out4\""
t=$($N arch 'quad=256 [conv(3) tanh]*5 gap dense' --input 28x28x1 | sed -nE 's/.*per kernel entry: ([0-9.e+-]+) s.*/\1/p')
e=$($N arch '[conv(3) erf]*5 gap dense' --input 28x28x1 | sed -nE 's/.*per kernel entry: ([0-9.e+-]+) s.*/\1/p')
tl=$($N arch 'quad=256 [conv(3) tanh]*5 gap dense' --input 28x28x1 | grep 'per kernel entry')
check "arch: tanh with quad=256 (Gauss-Hermite per entry) far above erf: $tl / erf $e s" "grep -qE 'per kernel entry: ([0-9]+ h )?[0-9]+ min' <<<\"\$tl\" && [ -n \"$e\" ]"
# the time model's structure (no timing): float32 below float64; the Mehler series (tanh) dearer
# than ReLU's fused step and cheaper than a 256-node quadrature
h64=$($N arch 'myrtle5' --input 32x32x3 --n 1000 | sed -nE 's/.*\(([0-9.e+-]+) core-hours.*/\1/p')
h32=$($N arch 'myrtle5' --input 32x32x3 --n 1000 --precision f32 | sed -nE 's/.*\(([0-9.e+-]+) core-hours.*/\1/p')
check "arch: float32 estimate below float64 ($h32 < $h64 core-hours)" "awk -v a=$h32 -v b=$h64 'BEGIN { exit !(a > 0 && a < b) }'"
tr=$($N arch '[conv(3) relu]*5 gap dense' --input 28x28x1 | sed -nE 's/.*per kernel entry: ([0-9.e+-]+) s.*/\1/p')
tt=$($N arch '[conv(3) tanh]*5 gap dense' --input 28x28x1 | sed -nE 's/.*per kernel entry: ([0-9.e+-]+) s.*/\1/p')
check "arch: tanh's Mehler series ($tt s) dearer than relu ($tr s), far below quad=256" "awk -v r=$tr -v t=$tt 'BEGIN { exit !(r > 0 && t > r && t < 60) }'"
# translations (classify --augment shift:S): the torus path computes every entry at the
# (2S+1)^2 differences of translations, the general path one kernel per translated copy,
# (S+1)^2 of them; float32 below float64 on the torus path too
per() { $N arch "$@" | sed -nE 's/.*per kernel entry: ([0-9.e+-]+) s.*/\1/p'; }
TOR='w=1.41 b=0.1 [conv(3,pad=circular) relu]*4 flatten dense'
t0=$(per "$TOR" --input 28x28x1); t1=$(per "$TOR" --input 28x28x1 --shift 1); t2=$(per "$TOR" --input 28x28x1 --shift 2)
t32=$(per "$TOR" --input 28x28x1 --precision f32)
check "arch --shift on the torus path: x9 and x25 ($t0, $t1, $t2 s), float32 below ($t32 s)" \
    "awk -v a=$t0 -v b=$t1 -v c=$t2 -v f=$t32 'BEGIN { exit !(a > 0 && b / a > 8.7 && b / a < 9.1 && c / a > 24 && c / a < 25.3 && f < a) }'"
m0=$(per 'flatten [dense relu]*2 dense' --input 28x28x1); m1=$(per 'flatten [dense relu]*2 dense' --input 28x28x1 --shift 1)
check "arch --shift on the general path: one kernel per translated copy, x4 ($m0, $m1 s)" \
    "awk -v a=$m0 -v b=$m1 'BEGIN { exit !(a > 0 && b / a > 3.9 && b / a < 4.1) }'"
out=$($N arch "$TOR" --input 28x28x1 --shift 9 2>&1)
check "arch --shift 9: refused, naming the range: $out" "grep -q -- '--shift' <<<\"\$out\""
err=$(timeout -s INT 3 $N kernel --arch 'quad=256 [conv(3) tanh]*5 gap dense' --x1 $T/img28.npy --out $T/long.npy 2>&1 >/dev/null)
check "kernel warns before a run above an hour: $err" "grep -qE 'warning: kernel: estimated at [0-9]+ h [0-9]{2} min' <<<\"\$err\" && [ ! -e $T/long.npy ]"
# raw 0..255 values put tanh's series past its stored terms near |rho| = 1 (there each entry is
# integrated one by one): a warning naming the fix; none on inputs of mean square ~1
err=$(timeout -s INT 3 $N kernel --arch '[conv(3) tanh]*2 gap dense' --x1 $T/raw.npy --out $T/raw_k.npy 2>&1 >/dev/null)
check "kernel on raw 0..255 values through tanh: warns, naming the fix: $err" \
    "grep -q 'covers only |rho| <= 0\.[0-8]' <<<\"\$err\" && grep -q 'scale the inputs' <<<\"\$err\""
err=$(timeout -s INT 20 $N kernel --arch '[conv(3) tanh]*2 gap dense' --x1 $T/img.npy --out $T/img_k.npy 2>&1 >/dev/null)
check "the same net on inputs of mean square 1: no such warning" "! grep -q 'covers only' <<<\"\$err\""

# the memory estimate in each precision against the run's measured peak (a tanh CNN, whose self
# states dominate: float32 keeps them in 4 bytes, and the estimate did not know it)
"$PY" -c "import numpy as np; np.save('$T/mem.npy', np.random.default_rng(5).standard_normal((40, 20, 20, 1)))"
for pr in f64 f32; do
    est=$($N arch '[conv(3) tanh]*4 gap dense' --input 20x20x1 --n 40 --precision $pr | sed -n 's/.*peak memory \([0-9.]*\) MiB.*/\1/p')
    peak=$("$PY" -c "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)" \
        $N kernel --arch '[conv(3) tanh]*4 gap dense' --x1 $T/mem.npy --out $T/mem_k.npy --precision $pr --quiet)
    # (within 15% and the process's own ~10-20 MiB)
    check "arch --precision $pr: peak memory $est MiB estimated, $peak MiB measured" \
        "awk -v e='$est' -v m='$peak' 'BEGIN { d = m - e; if (d < 0) d = -d; exit !(e > 0 && d <= 0.15 * e + 20) }'"
done

echo "bad inputs: $tried tried, $clear refused with a clear error, $((tried - clear)) not (silent ones say SILENT above)"
summary test_faults.sh
