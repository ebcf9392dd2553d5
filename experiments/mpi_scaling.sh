#!/usr/bin/env bash
# Strong scaling of `nkern-mpi kernel` from 1 to 2 ranks on this machine, against the cost model
# (`nkern arch --ranks R`).  The kernel: the NNGP and NTK Gram of N Fashion-MNIST test images at
# 14x14 through Myrtle-5 (`avgpool(2) myrtle5`), ~1 min on one rank of one thread.  Each
# configuration runs twice; the table gives wall time, CPU time (user + sys of every process of
# the job, from /usr/bin/time on mpirun), the load average before the run (a shared machine: the
# ratios of one run are what to read) and the per-rank tiles and seconds nkern-mpi reports.
# A third configuration, one rank of two threads, compares ranks with threads on the same cores.
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
printf "# %s, %s images (Gram, i <= j: %s entries), tiles %s, %s\n" "$SPEC" "$N" \
    $((N * (N + 1) / 2)) "$TILE" "$(date -u +%FT%TZ)"
printf "%-8s %-4s %9s %9s %7s  %s\n" ranksxthr run wall_s cpu_s load1 per-rank
for config in 1x1 2x1 1x2; do
    R=${config%x*} TH=${config#*x}
    for run in 1 2; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        /usr/bin/time -f "%e %U %S" -o time.txt $MPI -n $R "$NKM" kernel --arch "$SPEC" --x1 $F --n1 $N --get both \
            --out K$config.npy --tile $TILE --threads $TH 2>err.txt
        read -r wall user sys <time.txt
        ranks=$(sed -n 's/^kernel: per rank //p' err.txt)
        printf "%-8s %-4s %9.1f %9.1f %7s  %s\n" $config $run "$wall" "$(echo "$user + $sys" | bc)" "$load" "$ranks"
    done
done
for w in nngp ntk; do cmp K1x1.$w.npy K2x1.$w.npy && cmp K1x1.$w.npy K1x2.$w.npy; done && echo "# every configuration: identical bytes"
echo "# the cost model (calibrated per-op costs of the reference machine, +-2x):"
for config in 1x1 2x1 1x2; do
    "$NK" arch "$SPEC" --input 28x28x1 --n $N --ranks ${config%x*} --threads ${config#*x} | grep '^estimated wall'
done
