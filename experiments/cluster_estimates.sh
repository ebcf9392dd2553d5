#!/usr/bin/env bash
# The cost model's wall-time estimates (`nkern arch --n N [--n2 M] --ranks R --threads T`) for full
# Fashion-MNIST (60,000-image training Gram + 10,000 x 60,000 test kernel, 28x28x1) and CIFAR-10
# (50,000 Gram + 10,000 x 50,000, 32x32x3), NNGP and NTK together, at full resolution, on 16, 64
# and 256 nodes.  A node: one rank of 64 threads, 64 cores as fast as one core of the reference
# machine (a 2-core AMD EPYC Zen 4, where `make calibrate` measured the per-op costs).  The model
# is one core's seconds / (ranks x threads): perfect scaling, which test_mpi.sh and
# experiments/mpi_scaling.sh check only from 1 to 2 ranks.  Prints a markdown table.
set -eu
cd "$(dirname "$0")/.."
NK=$PWD/build/nkern
THREADS=64
core_hours() { # SPEC INPUT N [N2]: core-hours of one matrix from the model
    "$NK" arch "$1" --input "$2" --n "$3" ${4:+--n2 $4} --ranks 1 --threads 1 |
        sed -n 's/.*(\([0-9.e+]*\) core-hours.*/\1/p'
}
fmt() { # hours -> "3.2 h" / "41 min" / "12 d"
    awk -v h="$1" 'BEGIN { if (h < 1) printf "%.0f min", h * 60; else if (h < 48) printf "%.1f h", h; else printf "%.1f d", h / 24 }'
}
echo "| data set | kernel | core-hours (Gram + test) | 16 nodes | 64 nodes | 256 nodes |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
for data in "Fashion-MNIST 28x28x1 60000" "CIFAR-10 32x32x3 50000"; do
    set -- $data
    name=$1 input=$2 n=$3
    for spec in myrtle5 myrtle10 'cnn_gap(8)'; do
        g=$(core_hours "$spec" $input $n) t=$(core_hours "$spec" $input 10000 $n)
        total=$(awk -v a="$g" -v b="$t" 'BEGIN { print a + b }')
        row="| $name | \`$spec\` | $(printf %.0f "$total") |"
        for nodes in 16 64 256; do
            row="$row $(fmt "$(awk -v c="$total" -v r=$nodes -v t=$THREADS 'BEGIN { print c / (r * t) }')") |"
        done
        echo "$row"
    done
done
