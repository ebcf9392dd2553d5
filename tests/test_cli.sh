#!/usr/bin/env bash
# The CLI on bad input: every case exits with status 2 and a message naming the file or the
# spec position; nothing is left half-written.  Runs the normal and the sanitizer builds.
. "$(dirname "$0")/lib.sh"

"$PY" - "$T" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]; rng = np.random.default_rng(0)
np.save(f"{d}/img.npy", rng.standard_normal((4, 6, 6, 1)))
np.save(f"{d}/img2.npy", rng.standard_normal((3, 5, 6, 1)))
np.save(f"{d}/vec.npy", rng.standard_normal((5, 8)))
x = rng.standard_normal((4, 8)); x[2, 3] = np.nan; np.save(f"{d}/nan.npy", x)
x = rng.standard_normal((4, 8)); x[1, 0] = np.inf; np.save(f"{d}/inf.npy", x)
b = open(f"{d}/vec.npy", "rb").read(); open(f"{d}/trunc.npy", "wb").write(b[:len(b) - 9])
open(f"{d}/garbage.npy", "wb").write(b"this is not an npy file at all, sorry")
np.save(f"{d}/fortran.npy", np.asfortranarray(rng.standard_normal((4, 3))))
np.save(f"{d}/rgb.npy", rng.standard_normal((5, 8, 9, 3)))
np.save(f"{d}/rgb2.npy", rng.standard_normal((3, 8, 9, 3)))
PYEOF

# expect NAME STATUS PATTERN -- command...
expect() {
    local name=$1 want=$2 pat=$3; shift 3
    local out; out=$("$@" 2>&1); local rc=$?
    if [ "$rc" -ne "$want" ]; then bad "$name: exit $rc, expected $want: $out"; return; fi
    if ! grep -qE -- "$pat" <<<"$out"; then bad "$name: output lacks /$pat/: $out"; return; fi
    ok
}

for N in "$NKERN" "$NKERN_SAN"; do
    [ -x "$N" ] || { bad "$N missing"; continue; }
    expect "bad spec" 2 "column 12: unknown layer 'gapp'" $N kernel --arch 'dense relu gapp dense' --x1 $T/vec.npy --out $T/k.npy
    expect "unbalanced" 2 "column 16: expected '\*N'" $N kernel --arch '[conv(3) relu] gap dense' --x1 $T/img.npy --out $T/k.npy
    expect "truncated npy" 2 "trunc.npy.*(expected|truncated)" $N kernel --arch 'dense' --x1 $T/trunc.npy --out $T/k.npy
    expect "garbage npy" 2 "garbage.npy" $N kernel --arch 'dense' --x1 $T/garbage.npy --out $T/k.npy
    expect "fortran npy" 2 "fortran.npy.*ascontiguousarray" $N kernel --arch 'dense' --x1 $T/fortran.npy --out $T/k.npy
    expect "missing file" 2 "nope.npy" $N kernel --arch 'dense' --x1 $T/nope.npy --out $T/k.npy
    expect "shape mismatch" 2 "sample shapes differ" $N kernel --arch 'conv(3) relu flatten dense' --x1 $T/img.npy --x2 $T/img2.npy --out $T/k.npy
    expect "nan" 2 "nan.npy: sample 2, element 3 is NaN" $N kernel --arch 'dense relu dense' --x1 $T/nan.npy --out $T/k.npy
    expect "inf" 2 "inf.npy: sample 1, element 0 is infinite" $N kernel --arch 'dense relu dense' --x1 $T/vec.npy --x2 $T/inf.npy --out $T/k.npy
    expect "valid conv too large" 2 "window 7 is larger than the input size 6" $N kernel --arch 'conv(7,pad=valid) relu flatten dense' --x1 $T/img.npy --out $T/k.npy
    expect "spatial output" 2 "end the network with flatten or gap" $N kernel --arch 'conv(3) relu' --x1 $T/img.npy --out $T/k.npy
    expect "conv on vectors" 2 "needs a spatial input" $N kernel --arch 'conv(3) relu flatten dense' --x1 $T/vec.npy --out $T/k.npy
    expect "bad get" 2 "--get" $N kernel --arch 'dense' --x1 $T/vec.npy --get foo --out $T/k.npy
    expect "bad threads" 2 "--threads" $N kernel --arch 'dense' --x1 $T/vec.npy --threads 0 --out $T/k.npy
    expect "bad precision" 2 "--precision: 'f16' \(use f64 or f32\)" $N kernel --arch 'conv(3) relu gap dense' --x1 $T/img.npy --precision f16 --out $T/k.npy
    expect "precision without value" 2 "--precision: unknown option or missing value" $N kernel --arch 'conv(3) relu gap dense' --x1 $T/img.npy --out $T/k.npy --precision
    expect "classify bad precision" 2 "--precision: 'double' \(use f64 or f32\)" $N classify --data npy:$T/vec.npy,$T/vec.npy --arch dense --precision double
    expect "help names --precision" 0 "--precision f64\|f32" $N kernel --help
    # --precision f32: the conv stack in float32, within 1e-5 (relative, entry by entry) of
    # float64, and really computed in float32 (the results differ); --f32 only writes float32 files
    for x2 in "" "--x2 $T/rgb2.npy"; do
        rm -f $T/p64.* $T/p32.* $T/p32w.*
        spec='w=1.41421356 b=0.1 [conv(3) relu]*4 gap dense'
        $N kernel --arch "$spec" --x1 $T/rgb.npy $x2 --get both --out $T/p64.npy --quiet --precision f64 &&
        $N kernel --arch "$spec" --x1 $T/rgb.npy $x2 --get both --out $T/p32.npy --quiet --precision f32 &&
        $N kernel --arch "$spec" --x1 $T/rgb.npy $x2 --get both --out $T/p32w.npy --quiet --precision f32 --f32
        rc=$?
        if [ $rc -eq 0 ] && msg=$("$PY" -c "
import numpy as np, sys
worst = 0
for k in ('nngp', 'ntk'):
    a, b, c = np.load('$T/p64.%s.npy' % k), np.load('$T/p32.%s.npy' % k), np.load('$T/p32w.%s.npy' % k)
    if a.dtype != np.float64 or b.dtype != np.float64 or c.dtype != np.float32: sys.exit('dtypes %s %s %s' % (a.dtype, b.dtype, c.dtype))
    if a.shape != b.shape or a.shape != (5, 3 if '$x2' else 5): sys.exit('shapes %s %s' % (a.shape, b.shape))
    e = np.abs(b - a) / np.abs(a)
    worst = max(worst, e.max())
    if not e.max() <= 1e-5: sys.exit('%s: float32 vs float64 %.3g' % (k, e.max()))
    if not e.max() > 0: sys.exit('%s: --precision f32 gives the float64 bits' % k)
    if not np.array_equal(c, b.astype(np.float32)): sys.exit('%s: --f32 file differs from the float32 run rounded' % k)
print('%.3g' % worst)
" 2>&1); then ok; echo "precision f32 vs f64 ($N${x2:+, x2}): max relative error $msg"; else bad "--precision f32 vs f64 ${x2:+(x2)}: rc $rc: ${msg:-}"; fi
    done
    expect "unknown command" 2 "unknown command" $N frobnicate
    expect "arch bad input" 2 "--input" $N arch 'dense' --input 28y28
    expect "arch ok" 0 "gap .* scalar" $N arch '[conv(3) relu]*2 gap dense' --input 8x8x3 --n 100
    # more memory than the machine: refused with the estimate, before any work
    expect "memory" 2 "needs about [0-9.]+ GiB" $N kernel --arch 'flatten dense relu dense' --x1 /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz --x2 /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz --out $T/k.npy --quiet
    # an output directory that does not exist: refused before the run (exit 2), nothing left
    expect "unwritable out" 2 "nodir does not exist" $N kernel --arch 'dense' --x1 $T/vec.npy --out $T/nodir/k.npy --quiet
    # a good run writes both files with --get both, and leaves no temporary files
    expect "good run" 0 "" $N kernel --arch 'dense relu dense' --x1 $T/vec.npy --get both --out $T/good.npy --quiet
    if [ -s $T/good.nngp.npy ] && [ -s $T/good.ntk.npy ] && ! ls $T | grep -q tmp; then ok; else bad "good run outputs: $(ls $T)"; fi
    # --checkpoint: the same kernels as a plain run; an interrupted run resumes from its strips
    for spec in 'b=0.1 conv(3) relu conv(2) relu gap dense' 'dense relu dense erf dense'; do
        x=$T/img.npy; case "$spec" in dense*) x=$T/vec.npy ;; esac
        for x2 in "" "--x2 $x"; do
            rm -rf $T/ck $T/plain.* $T/ck.*
            $N kernel --arch "$spec" --x1 $x $x2 --get both --out $T/plain.npy --quiet
            NK_CHECKPOINT_STOP_AFTER=2 $N kernel --arch "$spec" --x1 $x $x2 --get both --out $T/ck.npy --checkpoint $T/ck --quiet 2>/dev/null
            rc=$?; n=$(ls $T/ck 2>/dev/null | grep -c 'strip.*npy')
            if [ $rc -eq 1 ] && [ "$n" -eq 4 ] && [ ! -e $T/ck.nngp.npy ]; then ok; else bad "interrupted checkpoint run: rc $rc, $n strip files"; fi
            expect "other run refused" 2 "holds another run" $N kernel --arch "w=1.1 $spec" --x1 $x --out $T/ck2.npy --checkpoint $T/ck --quiet
            expect "other precision refused" 2 "holds another run" $N kernel --arch "$spec" --x1 $x $x2 --get both --out $T/ck2.npy --checkpoint $T/ck --precision f32 --quiet
            out=$($N kernel --arch "$spec" --x1 $x $x2 --get both --out $T/ck.npy --checkpoint $T/ck 2>&1)
            if grep -q "(2 resumed)" <<<"$out" && [ ! -e $T/ck ]; then ok; else bad "resume: $out"; fi
            if "$PY" -c "
import numpy as np, sys
for k in ('nngp', 'ntk'):
    a, b = np.load('$T/plain.%s.npy' % k), np.load('$T/ck.%s.npy' % k)
    sys.exit(0 if a.shape == b.shape and np.abs(a - b).max() <= 1e-12 * np.abs(a).max() else 1)
"; then ok; else bad "checkpointed kernels differ from the plain run: $spec $x2"; fi
        done
    done
done
summary test_cli
