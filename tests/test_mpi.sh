#!/usr/bin/env bash
# nkern-mpi (make mpi): mpirun -n 1/2/3 gives files byte-identical to the single-process
# `nkern kernel` (Gram and cross, NNGP and NTK); a run interrupted by kill -9 of one rank, then
# resumed, gives the same bytes; a journal of another run is refused; a journal written by the
# single process resumes under MPI; the ScaLAPACK solve and eigenvalues match LAPACK.
# Without mpirun or build/nkern-mpi it reports 0 tests (the default build does not need MPI).
. "$(dirname "$0")/lib.sh"
ROOT=$PWD
NK=$ROOT/build/nkern NKM=$ROOT/build/nkern-mpi
if ! command -v mpirun >/dev/null || [ ! -x "$NKM" ]; then
    echo "test_mpi: skipped (no mpirun or build/nkern-mpi: make mpi)"; echo "test_mpi: 0 passed, 0 failed"; exit 0
fi
# a sandbox without network: shared memory between the ranks only
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
MPI="mpirun --allow-run-as-root --oversubscribe"
cd "$T"
same() { if cmp -s "$1" "$2"; then ok; else bad "$3: $1 and $2 differ"; fi; }

"$PY" - <<'PYEOF'
import numpy as np
r = np.random.default_rng(5)
np.save("x.npy", r.standard_normal((37, 6, 6, 2)))
np.save("y.npy", r.standard_normal((21, 6, 6, 2)))
np.save("m.npy", r.standard_normal((300, 7)))
np.save("big.npy", r.standard_normal((150, 8, 8, 1)))
PYEOF
A='[conv(3) relu]*2 gap dense'
"$NK" kernel --arch "$A" --x1 x.npy --get both --out ref.npy --quiet
"$NK" kernel --arch "$A" --x1 x.npy --x2 y.npy --get ntk --out refc.npy --quiet
"$NK" kernel --arch 'b=0.1 dense relu dense relu dense' --x1 m.npy --out refm.npy --quiet
for n in 1 2 3; do
    $MPI -n $n "$NKM" kernel --arch "$A" --x1 x.npy --get both --out g$n.npy --tile 8 --threads 1 --quiet || bad "gram -n $n failed"
    same g$n.nngp.npy ref.nngp.npy "gram nngp -n $n"; same g$n.ntk.npy ref.ntk.npy "gram ntk -n $n"
    $MPI -n $n "$NKM" kernel --arch "$A" --x1 x.npy --x2 y.npy --get ntk --out c$n.npy --tile 16 --threads 2 --quiet || bad "cross -n $n failed"
    same c$n.npy refc.npy "cross ntk -n $n"
    $MPI -n $n "$NKM" kernel --arch 'b=0.1 dense relu dense relu dense' --x1 m.npy --out m$n.npy --tile 128 --threads 1 --quiet || bad "mlp -n $n failed"
    same m$n.npy refm.npy "mlp gram -n $n"
    [ -e g$n.npy.journal ] || [ -e g$n.journal ] && bad "journal left after a finished run -n $n" || ok
done

# kill_a_rank_after_tiles JOB GLOB TRIES head|tail: once the journals GLOB hold 3 finished
# tiles, kill -9 the first or last child of the mpirun JOB; killed=1 if it did (polls every 0.05 s)
kill_a_rank_after_tiles() {
    killed=0
    for _ in $(seq 1 "$3"); do
        if [ "$(cat $2 2>/dev/null | wc -l)" -ge 3 ]; then
            rank=$(ps -o pid= --ppid "$1" | "$4" -1)
            [ -n "$rank" ] && kill -9 $rank && killed=1
            break
        fi
        sleep 0.05
    done
}

# kill -9 of one rank mid-run, then the same command: identical bytes
B='[conv(3) relu]*4 gap dense'
"$NK" kernel --arch "$B" --x1 big.npy --out refb.npy --quiet
NK_JOURNAL_PAUSE_AFTER=2 $MPI -n 2 "$NKM" kernel --arch "$B" --x1 big.npy --out kb.npy --tile 8 --threads 1 --quiet 2>/dev/null &
job=$!
kill_a_rank_after_tiles $job 'kb.npy.journal.*' 400 head
wait $job 2>/dev/null && bad "the job survived kill -9 of a rank" || ok
[ $killed = 1 ] && ok || bad "could not kill a rank mid-run"
[ -e kb.npy ] && bad "an output appeared under its final name after kill -9" || ok
done_before=$(cat kb.npy.journal.* 2>/dev/null | wc -l)
out=$($MPI -n 2 "$NKM" kernel --arch "$B" --x1 big.npy --out kb.npy --tile 8 --threads 1 2>&1) || bad "resume failed: $out"
same kb.npy refb.npy "resumed after kill -9"
grep -qE "\(([1-9][0-9]*) resumed\)" <<<"$out" && ok || bad "the resumed run recomputed everything: $out (journal had $done_before records)"

# a journal of another run is refused with the reason; the single process's journal resumes under MPI
NK_JOURNAL_STOP_AFTER=2 "$NK" kernel --arch "$A" --x1 x.npy --x2 y.npy --get ntk --out j.npy --journal --tile 8 --quiet 2>/dev/null
out=$($MPI -n 2 "$NKM" kernel --arch "$A relu" --x1 x.npy --x2 y.npy --get ntk --out j.npy --tile 8 --quiet 2>&1); rc=$?
[ $rc = 2 ] && grep -q "belongs to another run.*spec" <<<"$out" && ok || bad "another spec accepted (exit $rc): $out"
out=$($MPI -n 2 "$NKM" kernel --arch "$A" --x1 x.npy --x2 y.npy --get ntk --out j.npy --tile 16 --quiet 2>&1); rc=$?
[ $rc = 2 ] && grep -q "tile 8" <<<"$out" && ok || bad "another tile size accepted (exit $rc): $out"
out=$($MPI -n 3 "$NKM" kernel --arch "$A" --x1 x.npy --x2 y.npy --get ntk --out j.npy --tile 8 2>&1) || bad "resume of the single process's journal failed: $out"
same j.npy refc.npy "single-process journal resumed under MPI"
grep -q "(2 resumed)" <<<"$out" && ok || bad "expected 2 resumed tiles: $out"

# nkern-mpi solve (each rank reads its block-cyclic blocks of the file) vs nkern predict
"$PY" -c "
import numpy as np
np.save('lab.npy', np.random.default_rng(1).integers(0, 3, 37).astype(np.float64))
np.save('labt.npy', np.random.default_rng(2).integers(0, 3, 21).astype(np.float64))"
"$NK" kernel --arch "$A" --x1 y.npy --x2 x.npy --out kyx.npy --quiet
"$NK" kernel --arch "$A" --x1 x.npy --out kxx32.npy --f32 --quiet
"$NK" predict --k-train ref.nngp.npy --y lab.npy --one-hot --k-test kyx.npy --reg 1e-3 --out pr >/dev/null
"$NK" predict --k-train ref.nngp.npy --y lab.npy --one-hot --k-test kyx.npy --reg 1e-3 --time 0.5,inf --out prt >/dev/null
"$NK" predict --k-train kxx32.npy --y lab.npy --one-hot --k-test kyx.npy --reg 1e-3 --out pr32 >/dev/null
for n in 2 3; do
    $MPI -n $n "$NKM" solve --k-train ref.nngp.npy --y lab.npy --one-hot --k-test kyx.npy --reg 1e-3 --block 8 --out ms$n 2>/dev/null || bad "solve -n $n"
    $MPI -n $n "$NKM" solve --k-train ref.nngp.npy --y lab.npy --one-hot --k-test kyx.npy --reg 1e-3 --block 16 --time 0.5,inf --out mt$n 2>/dev/null || bad "solve --time -n $n"
    $MPI -n $n "$NKM" solve --k-train kxx32.npy --y lab.npy --one-hot --k-test kyx.npy --reg 1e-3 --block 8 --out m32$n 2>/dev/null || bad "solve f32 -n $n"
    "$PY" -c "
import numpy as np, sys
ok = True
for a, b in (('pr', 'ms$n'), ('prt', 'mt$n'), ('pr32', 'm32$n')):
    x, y = np.load(a + '.mean.npy'), np.load(b + '.mean.npy')
    ok &= x.shape == y.shape and np.abs(x - y).max() <= 1e-10 * np.abs(x).max()
sys.exit(0 if ok else 1)" && ok || bad "nkern-mpi solve -n $n differs from nkern predict"
done

# nkern-mpi solve --arch --x-train: the Gram computed straight into the block-cyclic layout (no
# file), against nkern predict on the file; stopped after one block per rank, then the same
# command: only the rest computed, the bytes of the uninterrupted solve, no journal left
SA=(--arch "$A" --x-train x.npy --get nngp --y lab.npy --one-hot --k-test kyx.npy --reg 1e-3 --block 8)
for n in 2 3; do
    $MPI -n $n "$NKM" solve "${SA[@]}" --out kd$n 2>/dev/null || bad "solve --arch -n $n"
    "$PY" -c "
import numpy as np, sys
x, y = np.load('pr.mean.npy'), np.load('kd$n.mean.npy')
sys.exit(0 if x.shape == y.shape and np.abs(x - y).max() <= 1e-10 * np.abs(x).max() else 1)" && ok || bad "nkern-mpi solve --arch -n $n differs from nkern predict"
done
NK_JOURNAL_STOP_AFTER=1 $MPI -n 2 "$NKM" solve "${SA[@]}" --journal sj --out kj >/dev/null 2>&1 && bad "the stop hook did not stop solve --journal" || ok
[ -e sj.blocks.0 ] && [ -e sj.blocks.1 ] && ok || bad "no block files after the stop"
out=$($MPI -n 2 "$NKM" solve "${SA[@]}" --journal sj --out kj 2>&1) || bad "solve --journal resume failed: $out"
grep -q "journal: 2 blocks resumed" <<<"$out" && ok || bad "expected 2 blocks resumed (one per rank): $out"
same kj.mean.npy kd2.mean.npy "solve resumed from its blocks"
ls sj* >/dev/null 2>&1 && bad "solve --journal left files after the solve" || ok

# nkern-mpi classify vs nkern classify (kernels in memory, no tiles) on Fashion-MNIST: the same
# lines and the same prediction bytes for 1/2/3 ranks.  One BLAS thread everywhere: the solve's
# eigendecomposition rounds differently with another thread count (mpirun binds ranks to cores).
FM=/usr/share/datasets/fashion-mnist
if [ -e $FM/train-images-idx3-ubyte.gz ]; then
    export OPENBLAS_NUM_THREADS=1
    CA='avgpool(4) [conv(3) relu]*2 gap dense'
    CL="--data fashion-mnist --train 60 --test 30 --first --reg 1e-4,1e-2,1 --kernel both --threads 1"
    strip() { grep -v '^time:' "$1"; }
    "$NK" classify $CL --arch "$CA" --out cref.npy >cref.txt 2>/dev/null || bad "nkern classify failed"
    for n in 1 2 3; do
        $MPI -n $n "$NKM" classify $CL --arch "$CA" --out cm$n.npy --journal CJ$n --tile 16 >cm$n.txt 2>cm$n.err || bad "classify -n $n failed: $(cat cm$n.err)"
        [ "$(strip cref.txt)" = "$(strip cm$n.txt)" ] && grep -q "test: ntk" cm$n.txt && ok || bad "classify -n $n printed other lines: $(cat cm$n.txt)"
        same cm$n.nngp.npy cref.nngp.npy "classify nngp predictions -n $n"; same cm$n.ntk.npy cref.ntk.npy "classify ntk predictions -n $n"
    done
    grep -q "kernel: per rank 0: [0-9]* tiles in .*, 2: [0-9]* tiles" cm3.err && ok || bad "no per-rank load line: $(cat cm3.err)"
    # a finished journal directory: nothing computed again, the same output
    out=$($MPI -n 2 "$NKM" classify $CL --arch "$CA" --out cm1b.npy --journal CJ1 --tile 16 2>&1 >cm1b.txt) || bad "rerun failed: $out"
    grep -q "train kernel: 10 of 10 tiles resumed, 0 computed" <<<"$out" && ok || bad "the rerun recomputed: $out"
    same cm1b.ntk.npy cref.ntk.npy "classify rerun on a finished journal"
    # --search: every candidate's Gram over the ranks, the same choice and predictions
    S='w=1,1.41 depth=1,2'
    ST='avgpool(4) [conv(3,w={w}) relu]*{depth} gap dense'
    "$NK" classify $CL --arch "$ST" --search "$S" --out sref.npy >sref.txt 2>/dev/null || bad "nkern classify --search failed"
    $MPI -n 2 "$NKM" classify $CL --arch "$ST" --search "$S" --out sm.npy --journal SJ --tile 16 >sm.txt 2>sm.err || bad "classify --search -n 2 failed: $(cat sm.err)"
    [ "$(grep -v '^time:' sref.txt | sed 's/, [0-9.]* s)/)/')" = "$(grep -v '^time:' sm.txt | sed 's/, [0-9.]* s)/)/')" ] && ok || bad "classify --search differs: $(cat sm.txt)"
    same sm.ntk.npy sref.ntk.npy "classify --search predictions"
    # --augment shift:1 on a circular stack (translations per entry): the same predictions
    CC='b=0.1 [conv(3,pad=circular) relu]*2 flatten dense'
    "$NK" classify $CL --arch "$CC" --augment shift:1 --out aref.npy >aref.txt 2>/dev/null || bad "nkern classify --augment shift:1 failed"
    $MPI -n 2 "$NKM" classify $CL --arch "$CC" --augment shift:1 --out am.npy --journal AJ --tile 16 >am.txt 2>am.err || bad "classify --augment shift:1 -n 2 failed: $(cat am.err)"
    [ "$(strip aref.txt)" = "$(strip am.txt)" ] && ok || bad "augmented classify -n 2 printed other lines: $(cat am.txt)"
    same am.ntk.npy aref.ntk.npy "augmented classify ntk predictions -n 2"
    # without --journal: refused, naming the fix
    out=$($MPI -n 2 "$NKM" classify $CL --arch "$CA" 2>&1); rc=$?
    [ $rc = 2 ] && grep -q "needs --journal DIR" <<<"$out" && ok || bad "classify without --journal (exit $rc): $out"

    # kill -9 of one rank in the training Gram, then the same command: identical predictions
    CK="--data fashion-mnist --train 96 --test 24 --first --reg 1e-3 --kernel ntk --threads 1"
    "$NK" classify $CK --arch "$CA" --out kref.npy >kref.txt 2>/dev/null
    NK_JOURNAL_PAUSE_AFTER=2 $MPI -n 2 "$NKM" classify $CK --arch "$CA" --out kc.npy --journal KJ --tile 8 --quiet >/dev/null 2>&1 &
    job=$!
    kill_a_rank_after_tiles $job 'KJ/train.journal.*' 600 tail
    wait $job 2>/dev/null && bad "classify survived kill -9 of a rank" || ok
    [ $killed = 1 ] && ok || bad "could not kill a classify rank mid-run"
    [ -e kc.npy ] && bad "predictions written by a killed run" || ok
    out=$($MPI -n 2 "$NKM" classify $CK --arch "$CA" --out kc.npy --journal KJ --tile 8 2>&1 >kc.txt) || bad "classify resume failed: $out"
    same kc.npy kref.npy "classify resumed after kill -9"
    [ "$(strip kref.txt)" = "$(strip kc.txt)" ] && ok || bad "resumed classify printed other lines: $(cat kc.txt)"
    grep -qE "train kernel: [1-9][0-9]* of 78 tiles resumed" <<<"$out" && ok || bad "the resumed classify recomputed everything: $out"
    unset OPENBLAS_NUM_THREADS
fi

# ScaLAPACK vs LAPACK (1x2, 1x3 and 2x2 process grids)
for n in 2 3 4; do
    out=$($MPI -n $n "$ROOT/build/mpi-tests/test_mpi_solve" 2>&1)
    grep -q "test_mpi_solve: [0-9]* passed, 0 failed" <<<"$out" && ok || bad "test_mpi_solve -n $n: $out"
done
summary test_mpi
