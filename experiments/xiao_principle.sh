#!/usr/bin/env bash
# Claim (Xiao 2022, "Eigenspace restructuring"; SCIENCE.md section 3): on a product of spheres
# (one per patch) an MLP's eigenvalue depends on the degree vector k only through the
# frequency |k| (up to finite-n0 effects), while a hierarchical CNN also splits each frequency
# by space: interactions among patches that share a receptive field early (siblings in the
# network's tree) get far larger eigenvalues than the same order among distant patches.
# 4 patches on S^2, non-overlapping windows: conv(1) on the patch channels is conv(3, stride=3)
# on the raw signal; the tree joins patches (0,1) and (2,3) first, then the two halves.
set -eu
cd "$(dirname "$0")/.."
NK=${NKERN:-build/nkern}
OUT=experiments/out; mkdir -p "$OUT"
CNN="conv(1) relu conv(2,stride=2,pad=valid) relu conv(2,stride=2,pad=valid) relu flatten dense"
MLP="flatten dense relu dense relu dense"
for name in CNN MLP; do
    spec=${!name}
    echo "== $name: $spec"
    $NK spectrum --patches 4 --dim 3 --kmax 4 --nquad 24 --arch "$spec" --out "$OUT/xiao_$name.tsv"
    # the frequency-2 interactions between two patches, by pair
    awk -F'\t' '$2 == 2 && $3 >= 2 { print "   pair k =", $1, " extent", $3, " lambda", $4 }' "$OUT/xiao_$name.tsv" | grep -E '\(1,1,0,0\)|\(0,1,1,0\)|\(1,0,1,0\)|\(1,0,0,1\)'
done
