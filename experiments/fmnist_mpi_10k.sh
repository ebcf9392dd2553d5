#!/bin/bash
# Issue 19's real run (experiments/README.md, docs/cluster.md): Fashion-MNIST, the first N_TRAIN
# training and the first N_TEST test images, the Myrtle-5 kernel on images pooled to 14x14
# (`avgpool(2) myrtle5`), NNGP and NTK in float32, through `mpirun -n RANKS nkern-mpi classify`
# with its journal in WORKDIR/J.  Interrupt it at any time (kill -9 of a rank or of the job, the
# end of a session); the same command resumes from the journal and computes only missing tiles.
# Each start appends a line to WORKDIR/log.txt; a run that ends appends its wall and CPU time.
# Usage: bash experiments/fmnist_mpi_10k.sh WORKDIR [N_TRAIN] [N_TEST] [RANKS]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${1:?WORKDIR}; NTR=${2:-10000}; NTE=${3:-10000}; R=${4:-2}
mkdir -p "$W"; cd "$W"
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
echo "=== start $(date -u +%FT%TZ) load $(cut -d' ' -f1 /proc/loadavg)" >> log.txt
rc=0
/usr/bin/time -f "wall %e s user %U sys %S" -a -o log.txt \
  mpirun --allow-run-as-root --oversubscribe --bind-to none -n "$R" \
  "$ROOT/build/nkern-mpi" classify --data fashion-mnist --first --train "$NTR" --test "$NTE" \
  --arch 'avgpool(2) myrtle5' --kernel both --precision f32 --reg 1e-4,1e-3,1e-2,1e-1 \
  --journal "$W/J" --threads 1 --progress --out "$W/pred" >> out.txt 2>> log.txt || rc=$?
echo "=== end $(date -u +%FT%TZ) rc $rc" >> log.txt
cat out.txt
exit $rc
