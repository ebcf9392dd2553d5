#!/usr/bin/env bash
# Claim (Xiao 2022; SCIENCE.md section 3, "Learning curves"): a hierarchical CNN kernel learns a
# local high-order interaction with far fewer samples than an MLP kernel, and the measured
# learning curves of kernel regression follow the eigenlearning prediction (Simon et al. 2021;
# Bordelon, Canatar, Pehlevan 2020) computed from the product-of-spheres eigenvalues.
# Data: `nkern synth`, 4 patches on S^{D-1} (default D = 3); targets
#   local     0:2,1:2  P_2 x P_2 on sibling patches 0, 1 (order 4, joined by the first conv)
#   spread    1:2,2:2  the same order on non-siblings 1, 2 (joined only at the top)
#   longrange 0:1,3:1  order 2 across the whole input
# NTK regression, ridge 1e-6 K(x,x), 3 seeds, 1000 test points.  n_half: the smallest n of the
# list at which the measured MSE is below half of E[f^2] (">" if never).
set -eu
cd "$(dirname "$0")/.."
NK=${NKERN:-build/nkern}
OUT=experiments/out; mkdir -p "$OUT"
D=${D:-3}; SEEDS=${SEEDS:-3}; NS=${NS:-10,20,50,100,200,500,1000,2000,4000}
CNN="conv(1) relu conv(2,stride=2,pad=valid) relu conv(2,stride=2,pad=valid) relu flatten dense"
MLP="flatten dense relu dense relu dense"
echo "CNN [0]: $CNN"
echo "MLP [1]: $MLP"
for t in local:0:2,1:2 spread:1:2,2:2 longrange:0:1,3:1; do
    name=${t%%:*}; target=${t#*:}
    echo "== $name: target $target"
    $NK curve --arch "$CNN" --arch "$MLP" --patches 4 --dim "$D" --target "$target" --n "$NS" --seeds "$SEEDS" \
        --test 1000 --threads 2 --out "$OUT/curve_$name.tsv" --plot "$OUT/curve_$name.svg" 2>/dev/null \
      | tee "$OUT/curve_$name.txt" | awk -F'\t' '
        /E\[f\^2\] = / { match($0, /E\[f\^2\] = [0-9.e+-]+/); p = substr($0, RSTART + 10, RLENGTH - 10) + 0 }
        /^#/ { next }
        { n[++r] = $1; cm[r] = $2; cp[r] = $4; mm[r] = $6; mp[r] = $8
          rc = $2 / $4; rm = $6 / $8
          if (r == 1 || rc > wc) wc = rc; if (r == 1 || rc < bc) bc = rc
          if (r == 1 || rm > wm) wm = rm; if (r == 1 || rm < bm) bm = rm }
        END {
          printf "   %6s  %-22s %-22s\n", "n", "CNN measured/predicted", "MLP measured/predicted"
          for (i = 1; i <= r; i++) printf "   %6d  %.4g / %-13.4g %.4g / %.4g\n", n[i], cm[i], cp[i], mm[i], mp[i]
          hc = ">"; hm = ">"
          for (i = r; i >= 1; i--) { if (cm[i] < p / 2) hc = n[i]; if (mm[i] < p / 2) hm = n[i] }
          printf "   E[f^2] = %.4g; n_half: CNN %s, MLP %s; final MSE/E[f^2]: CNN %.3f, MLP %.3f\n", p, hc, hm, cm[r] / p, mm[r] / p
          printf "   measured/predicted ratio: CNN %.2f..%.2f, MLP %.2f..%.2f\n", bc, wc, bm, wm
        }'
done
