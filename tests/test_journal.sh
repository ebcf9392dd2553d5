#!/usr/bin/env bash
# The single process's journal (nk_dist.h): `nkern kernel --journal` interrupted (after N tiles,
# and by kill -9) then resumed gives bytes identical to an uninterrupted `nkern kernel`, also
# with --f32 files and --get both; a journal of other data or precision is refused with the
# reason; `nkern classify --journal DIR` resumes and predicts exactly as without it.
. "$(dirname "$0")/lib.sh"
NK=$PWD/build/nkern
cd "$T"
same() { if cmp -s "$1" "$2"; then ok; else bad "$3: $1 and $2 differ"; fi; }
"$PY" - <<'PYEOF'
import numpy as np
r = np.random.default_rng(9)
np.save("x.npy", r.standard_normal((45, 6, 6, 1)))
np.save("x2.npy", r.standard_normal((45, 6, 6, 1)))
np.save("y.npy", r.standard_normal((19, 6, 6, 1)))
np.save("cx.npy", r.standard_normal((80, 5, 5, 1))); np.save("cy.npy", r.integers(0, 3, 80).astype(np.float64))
PYEOF
A='[conv(3) relu]*3 gap dense'
"$NK" kernel --arch "$A" --x1 x.npy --get both --out ref.npy --f32 --quiet
NK_JOURNAL_STOP_AFTER=4 "$NK" kernel --arch "$A" --x1 x.npy --get both --out j.npy --f32 --journal --tile 8 --quiet 2>/dev/null && bad "stop hook ignored" || ok
[ -e j.nngp.npy ] && bad "output under its final name before the end" || ok
out=$("$NK" kernel --arch "$A" --x1 x.npy --get both --out j.npy --f32 --journal --tile 8 2>&1) || bad "resume: $out"
same j.nngp.npy ref.nngp.npy "nngp resumed"; same j.ntk.npy ref.ntk.npy "ntk resumed"
grep -q "4 of 21 tiles resumed" <<<"$out" && ok || bad "expected 4 resumed tiles: $out"
ls j.journal* >/dev/null 2>&1 && bad "journal left after the run" || ok
# refusals: other data, other precision
NK_JOURNAL_STOP_AFTER=2 "$NK" kernel --arch "$A" --x1 x.npy --x2 y.npy --out c.npy --journal --tile 8 --quiet 2>/dev/null
out=$("$NK" kernel --arch "$A" --x1 x2.npy --x2 y.npy --out c.npy --journal --tile 8 2>&1); rc=$?
[ $rc = 2 ] && grep -q "belongs to another run.*data" <<<"$out" && ok || bad "other data accepted ($rc): $out"
out=$("$NK" kernel --arch "$A" --x1 x.npy --x2 y.npy --out c.npy --journal --tile 8 --precision f32 2>&1); rc=$?
[ $rc = 2 ] && grep -q "precision f64" <<<"$out" && ok || bad "other precision accepted ($rc): $out"
out=$("$NK" kernel --arch "$A" --x1 x.npy --x2 y.npy --out c.npy --journal --tile 8 --w-std 1.5 2>&1); rc=$?
[ $rc = 2 ] && grep -q "w=1.5" <<<"$out" && ok || bad "other --w-std accepted ($rc): $out"
# kill -9 mid-run, then resume
B='[conv(3) relu]*5 gap dense'
"$NK" kernel --arch "$B" --x1 x.npy --out refk.npy --quiet --threads 1
NK_JOURNAL_PAUSE_AFTER=2 "$NK" kernel --arch "$B" --x1 x.npy --out k.npy --journal --tile 8 --threads 1 --quiet &
job=$!
for _ in $(seq 1 400); do [ "$(cat k.npy.journal.0 2>/dev/null | wc -l)" -ge 2 ] && break; sleep 0.02; done
kill -9 $job 2>/dev/null && ok || bad "the run ended before it could be killed"
wait $job 2>/dev/null
"$NK" kernel --arch "$B" --x1 x.npy --out k.npy --journal --tile 8 --quiet || bad "resume after kill -9"
same k.npy refk.npy "resumed after kill -9"
# classify --journal: interrupted, resumed, the same predictions as without the journal
C='[conv(3) relu]*2 gap dense'
"$NK" classify --data npy:cx.npy,cy.npy --arch "$C" --train 50 --test 20 --kernel both --out p0.npy --quiet
NK_JOURNAL_STOP_AFTER=3 "$NK" classify --data npy:cx.npy,cy.npy --arch "$C" --train 50 --test 20 --kernel both --journal jd --tile 16 --out p1.npy --quiet 2>/dev/null && bad "classify stop hook ignored" || ok
out=$("$NK" classify --data npy:cx.npy,cy.npy --arch "$C" --train 50 --test 20 --kernel both --journal jd --tile 16 --out p1.npy 2>&1) || bad "classify resume: $out"
grep -q "train kernel: 3 of 10 tiles resumed" <<<"$out" && ok || bad "classify did not resume: $out"
same p1.nngp.npy p0.nngp.npy "classify nngp predictions"; same p1.ntk.npy p0.ntk.npy "classify ntk predictions"
out=$("$NK" classify --data npy:cx.npy,cy.npy --arch "$C" --train 50 --test 20 --kernel both --journal jd --tile 16 --out p2.npy 2>&1)
grep -q "test kernel: 8 of 8 tiles resumed, 0 computed" <<<"$out" && ok || bad "a finished classify recomputed: $out"
# classify --journal --augment shift:1 (translations per entry, the torus path): interrupted,
# resumed, the same predictions as the augmented kernels computed whole; another shift is
# refused naming the line that differs; flips are refused naming the fix
CC='b=0.1 [conv(3,pad=circular) relu]*2 flatten dense'
"$NK" classify --data npy:cx.npy,cy.npy --arch "$CC" --augment shift:1 --train 50 --test 20 --kernel both --out q0.npy --quiet
NK_JOURNAL_STOP_AFTER=3 "$NK" classify --data npy:cx.npy,cy.npy --arch "$CC" --augment shift:1 --train 50 --test 20 --kernel both --journal ja --tile 16 --out q1.npy --quiet 2>/dev/null && bad "augmented classify stop hook ignored" || ok
out=$("$NK" classify --data npy:cx.npy,cy.npy --arch "$CC" --augment shift:1 --train 50 --test 20 --kernel both --journal ja --tile 16 --out q1.npy 2>&1) || bad "augmented classify resume: $out"
grep -q "train kernel: 3 of 10 tiles resumed" <<<"$out" && ok || bad "augmented classify did not resume: $out"
same q1.nngp.npy q0.nngp.npy "augmented classify nngp predictions"; same q1.ntk.npy q0.ntk.npy "augmented classify ntk predictions"
out=$("$NK" classify --data npy:cx.npy,cy.npy --arch "$CC" --augment shift:2 --train 50 --test 20 --journal ja --tile 16 2>&1); rc=$?
[ $rc != 0 ] && grep -q "augment shift:2" <<<"$out" && ok || bad "a journal of another shift was not refused (exit $rc): $out"
out=$("$NK" classify --data npy:cx.npy,cy.npy --arch "$CC" --augment flip --train 50 --test 20 --journal jf 2>&1); rc=$?
[ $rc = 2 ] && grep -q "not flips" <<<"$out" && ok || bad "flips with --journal (exit $rc): $out"
# translations per entry with a plan that cannot take them: refused naming the fix, nothing created
out=$("$NK" classify --data npy:cx.npy,cy.npy --arch "$C" --augment shift:1 --train 50 --test 20 --journal jz --tile 16 2>&1); rc=$?
[ $rc != 0 ] && grep -q "pad=circular" <<<"$out" && [ ! -e jz ] && ok || bad "shift:1 --journal with zero padding (exit $rc, jz $(ls -d jz 2>&1)): $out"
# a tile side the plan cannot take (an MLP's: multiples of 128): refused naming the fix, nothing created
"$PY" -c "import numpy as np; r = np.random.default_rng(3); np.save('v.npy', r.standard_normal((40, 6))); np.save('vy.npy', r.integers(0, 3, 40).astype(np.float64))"
out=$("$NK" kernel --arch '[dense relu]*2 dense' --x1 v.npy --out v.npy.k.npy --journal --tile 12 2>&1); rc=$?
[ $rc = 2 ] && grep -q "use --tile 128" <<<"$out" && ! ls v.npy.k* >/dev/null 2>&1 && ok || bad "--tile 12 on an MLP (exit $rc, files: $(ls v.npy.k* 2>&1)): $out"
out=$("$NK" classify --data npy:v.npy,vy.npy --arch '[dense relu]*2 dense' --train 30 --test 10 --journal jt --tile 100 2>&1); rc=$?
[ $rc = 2 ] && grep -q "use --tile 128" <<<"$out" && [ ! -e jt ] && ok || bad "classify --tile 100 on an MLP (exit $rc, jt $(ls -d jt 2>&1)): $out"
# predict --cg over the memory-mapped kernel file (float64 and float32 storage) vs the Cholesky posterior
"$PY" -c "
import numpy as np
x = np.load('cx.npy'); y = np.load('cy.npy')
np.save('tx.npy', x[:60]); np.save('sx.npy', x[60:]); np.save('ty.npy', y[:60]); np.save('sy.npy', y[60:])"
"$NK" kernel --arch "$C" --x1 tx.npy --out kt.npy --quiet && "$NK" kernel --arch "$C" --x1 sx.npy --x2 tx.npy --out ks.npy --quiet
"$NK" kernel --arch "$C" --x1 tx.npy --out kt32.npy --f32 --quiet
"$NK" predict --k-train kt.npy --k-test ks.npy --y ty.npy --one-hot --reg 1e-3 --out chol >/dev/null || bad "predict (Cholesky)"
out=$("$NK" predict --k-train kt.npy --k-test ks.npy --y ty.npy --one-hot --reg 1e-3 --out cg --cg 20 2>&1) || bad "predict --cg: $out"
grep -q "cg: iteration 1, relative residual" <<<"$out" && ok || bad "no residual per iteration: $out"
"$NK" predict --k-train kt32.npy --k-test ks.npy --y ty.npy --one-hot --reg 1e-3 --out cg32 --cg 20 >/dev/null 2>&1 || bad "predict --cg on float32 storage"
"$PY" -c "
import numpy as np, sys
a, b, c = np.load('chol.mean.npy'), np.load('cg.mean.npy'), np.load('cg32.mean.npy')
s = np.abs(a).max()
# CG to a residual of 1e-8 with cond ~1e3; float32 storage perturbs K by ~1e-7 relative
sys.exit(0 if np.abs(a - b).max() <= 1e-5 * s and np.abs(a - c).max() <= 1e-3 * s else 1)" && ok || bad "predict --cg differs from the Cholesky posterior"
out=$("$NK" predict --k-train kt.npy --k-test ks.npy --y ty.npy --one-hot --reg 0 --out cg --cg 5 2>&1); rc=$?
[ $rc = 2 ] && grep -q "reg > 0" <<<"$out" && ok || bad "--cg with --reg 0 accepted ($rc): $out"
summary test_journal
