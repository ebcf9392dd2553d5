#!/bin/bash
# The reduced real run of issue 19 (docs/cluster.md): Fashion-MNIST, N_TRAIN train / N_TEST test
# images at 14x14 (avgpool(2) first), a Myrtle-style conv kernel through `mpirun -n 2 nkern-mpi`,
# the training Gram interrupted by kill -9 of one rank part way and resumed, then NNGP regression.
# Usage: bash experiments/cluster_reduced.sh WORKDIR [N_TRAIN] [N_TEST]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${1:?WORKDIR}; NTR=${2:-600}; NTE=${3:-600}
mkdir -p "$W"; cd "$W"
MPI="mpirun --allow-run-as-root --oversubscribe -n 2"
SPEC='avgpool(2) conv(3) relu conv(3) relu avgpool(2) conv(3) relu avgpool(2) conv(3) relu gap dense'
/usr/bin/python3 - "$NTR" "$NTE" <<'PY'
import gzip, sys, numpy as np
d = '/usr/share/datasets/fashion-mnist/'
def imgs(f, n): return np.frombuffer(gzip.open(d + f).read(), np.uint8, offset=16)[:n * 784].reshape(n, 28, 28, 1) / 255.0
def labs(f, n): return np.frombuffer(gzip.open(d + f).read(), np.uint8, offset=8)[:n].astype(np.float64)
ntr, nte = int(sys.argv[1]), int(sys.argv[2])
np.save('xtr.npy', imgs('train-images-idx3-ubyte.gz', ntr)); np.save('ytr.npy', labs('train-labels-idx1-ubyte.gz', ntr))
np.save('xte.npy', imgs('t10k-images-idx3-ubyte.gz', nte)); np.save('yte.npy', labs('t10k-labels-idx1-ubyte.gz', nte))
PY
t0=$(date +%s.%N)
# the training Gram: one rank killed (kill -9) once a third of the tiles are journaled (mpirun
# then ends the job), and the same command resumed
$MPI "$ROOT/build/nkern-mpi" kernel --arch "$SPEC" --x1 xtr.npy --out ktr.npy --tile 40 --threads 1 --quiet &
job=$!
total=$(( (NTR / 40) * (NTR / 40 + 1) / 2 ))
while kill -0 $job 2>/dev/null; do
  n=$(cat ktr.npy.journal.* 2>/dev/null | wc -l)
  if [ "$n" -ge $((total / 3)) ]; then rank=$(ps -o pid= --ppid $job | head -1); kill -9 $rank; echo "kill -9 of rank pid $rank after $n of $total tiles"; break; fi
  sleep 1
done
wait $job 2>/dev/null || true
t1=$(date +%s.%N)
$MPI "$ROOT/build/nkern-mpi" kernel --arch "$SPEC" --x1 xtr.npy --out ktr.npy --tile 40 --threads 1
t2=$(date +%s.%N)
$MPI "$ROOT/build/nkern-mpi" kernel --arch "$SPEC" --x1 xte.npy --x2 xtr.npy --out kte.npy --tile 40 --threads 1
t3=$(date +%s.%N)
"$ROOT/build/nkern" predict --k-train ktr.npy --y ytr.npy --one-hot --k-test kte.npy --reg 1e-3 --out pred --labels-test yte.npy
# the same posterior through ScaLAPACK: each rank reads only its block-cyclic blocks of K
$MPI "$ROOT/build/nkern-mpi" solve --k-train ktr.npy --y ytr.npy --one-hot --k-test kte.npy --reg 1e-3 --block 128 --out pred_mpi --labels-test yte.npy
/usr/bin/python3 -c "print('wall: gram %.1f s before the kill + %.1f s resumed, cross %.1f s, total %.1f s' % ($t1-$t0, $t2-$t1, $t3-$t2, $t3-$t0))"
