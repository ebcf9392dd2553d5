#!/usr/bin/env bash
# Strong scaling of `nkern-mpi kernel` from 1 to 2 ranks on this machine, against the cost model
# (`nkern arch --ranks R`).  The kernel: the NNGP and NTK Gram of N Fashion-MNIST test images at
# 14x14 through Myrtle-5 (`avgpool(2) myrtle5`), ~1 min on one rank of one thread.  Each
# configuration runs twice; the table gives wall time, CPU time (user + sys of every process of
# the job, from /usr/bin/time on mpirun), the load average before the run (a shared machine: the
# ratios of one run are what to read) and the per-rank tiles and seconds nkern-mpi reports.
#   usage: experiments/mpi_scaling.sh [N] [TILE]      (default 600 images, tiles of 64)
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD NK=$PWD/build/nkern NKM=$PWD/build/nkern-mpi
N=${1:-600} TILE=${2:-64}
SPEC='avgpool(2) myrtle5'
F=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
[ -x "$NKM" ] || { echo "build nkern-mpi first: make mpi" >&2; exit 2; }
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
# no binding: on a shared machine the ranks go where the scheduler finds a free core
MPI="mpirun --allow-run-as-root --oversubscribe --bind-to none"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cd "$T"
printf "# %s, %s images (Gram, i <= j: %s entries), tiles %s, 1 thread per rank, %s\n" "$SPEC" "$N" \
    $((N * (N + 1) / 2)) "$TILE" "$(date -u +%FT%TZ)"
printf "%-8s %-4s %9s %9s %7s  %s\n" ranks run wall_s cpu_s load1 per-rank
for R in 1 2; do
    for run in 1 2; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        /usr/bin/time -f "%e %U %S" -o time.txt $MPI -n $R "$NKM" kernel --arch "$SPEC" --x1 $F --n1 $N --get both \
            --out K$R.npy --tile $TILE --threads 1 2>err.txt
        read -r wall user sys <time.txt
        ranks=$(sed -n 's/^kernel: per rank //p' err.txt)
        printf "%-8s %-4s %9.1f %9.1f %7s  %s\n" $R $run "$wall" "$(echo "$user + $sys" | bc)" "$load" "$ranks"
    done
done
cmp K1.nngp.npy K2.nngp.npy && cmp K1.ntk.npy K2.ntk.npy && echo "# 1 and 2 ranks: identical bytes"
echo "# the cost model (calibrated per-op costs of the reference machine, +-2x):"
for R in 1 2; do
    "$NK" arch "$SPEC" --input 28x28x1 --n $N --ranks $R --threads 1 | grep '^estimated wall'
done
