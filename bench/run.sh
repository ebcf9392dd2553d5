#!/usr/bin/env bash
# make bench: nkern's benchmarks, and the PyTorch peer (../shared/bench/peer_torch.py) in the
# same run when Debian's python3-torch is present.  Table on stdout; bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build/bench >/dev/null
tmp=bench/results.json.tmp
build/bench bench/.nkern.jsonl ${BENCH_QUICK:+quick}
peer=../shared/bench/peer_torch.py
echo
peers=""
if [ -f "$peer" ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "peer: $peer (PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)'), 2 threads)"
    for args in "--depth 21 --hw 32 --c 3 --pairs 2 --readout gap" "--depth 21 --hw 32 --c 3 --pairs 2 --readout gap --f32" \
                "--depth 21 --hw 32 --c 3 --pairs 32 --readout flatten" "--depth 21 --hw 32 --c 3 --pairs 32 --readout flatten --f32"; do
        # best of 3 runs, as nkern's rows are bests of repetitions (this VM varies run to run)
        all=""
        for rep in 1 2 3; do
            all="$all $(/usr/bin/python3 "$peer" $args --threads 2 | sed -E 's/.*ms_per_entry=([0-9.]+).*/\1/')"
        done
        ms=$(printf '%s\n' $all | sort -g | head -1)
        echo "  peer $args: $ms ms per entry (best of:$all)"
        peers="$peers{\"peer\": \"peer_torch.py $args\", \"ms_per_entry\": $ms, \"runs_ms\": [$(echo $all | tr ' ' ',')]}"$'\n'
    done
else
    echo "peer: $peer skipped (needs the file and Debian's python3-torch)"
fi
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    # the rows of issue 20 against bench/peer_nt.py (neural-tangents' algorithm for pooled,
    # strided, residual and smooth-activation networks), the same networks on the same 32x32x3
    # shape and the same 4 x 4 cross pairs: one run each (a run of the peer takes minutes); the
    # quadrature row (tanh) from its first layer on one pair and its two samples of 16x16,
    # scaled to 21 layers and 4 x 4 pairs (see peer_nt.py).  Only the rows the benchmark ran.
    pnt=bench/peer_nt.py
    echo "peer: $pnt (PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)'), 2 threads)"
    for row in "myrtle-5:--arch myrtle5 --n 4" "myrtle-10:--arch myrtle10 --n 4" "strided-8:--arch strided --n 4" \
               "resnet-4-blocks:--arch resnet4 --n 4" "gelu-gap-21:--arch gelu21 --n 4" \
               "tanh-gap-21:--arch tanh21 --n 4 --batch 1 --time-layers 1 --time-hw 16"; do
        name=${row%%:*}
        grep -q "\"name\": \"$name\"" bench/.nkern.jsonl || continue
        for prec in "" " --f32"; do
            args="${row#*:} --hw 32 --threads 2$prec"
            ms=$(/usr/bin/python3 "$pnt" $args | sed -E 's/.*ms_per_entry=([0-9.]+).*/\1/')
            echo "  peer_nt.py $args: $ms ms per entry"
            peers="$peers{\"peer\": \"peer_nt.py $args\", \"row\": \"$name\", \"precision\": \"$([ -n "$prec" ] && echo float32 || echo float64)\", \"ms_per_entry\": $ms}"$'\n'
        done
    done
else
    echo "peer: skipped (needs Debian's python3-torch)"
fi
/usr/bin/python3 - "$tmp" <<PYEOF
import json, sys
lines = [json.loads(l) for l in open("bench/.nkern.jsonl")]
machine = [l["machine"] for l in lines if "machine" in l]
rows = [l for l in lines if "machine" not in l]
peers = [json.loads(l) for l in """$peers""".splitlines() if l.strip()]
def peer(key):
    for p in peers:
        if p["peer"].endswith(key): return p["ms_per_entry"]
def peer_row(r):
    for p in peers:
        if p.get("row") == r["name"] and p["precision"] == r["precision"]: return p["ms_per_entry"]
for r in rows:
    f32 = r["precision"] == "float32"
    key = {"cnn-gap-21": "--readout gap", "cnn-flatten-21": "--readout flatten"}.get(r["name"])
    ref = peer(key + (" --f32" if f32 else "")) if key else peer_row(r)
    if ref: r["peer_ms_per_entry"] = ref; r["speedup_vs_peer"] = ref / r["ms_per_entry"]
for r in rows:
    if "speedup_vs_peer" in r:
        print(f"{r['name']} {r['precision']}: {r['ms_per_entry']:.4f} ms per entry "
              f"({100 * r['fraction_of_limit']:.0f}% of {r['limit']}), peer (same precision) "
              f"{r['peer_ms_per_entry']:.3f} ms, ratio {r['speedup_vs_peer']:.1f}x")
json.dump({"machine": machine[0] if machine else {}, "nkern": rows, "peer": peers}, open(sys.argv[1], "w"), indent=1)
PYEOF
mv "$tmp" bench/results.json
rm -f bench/.nkern.jsonl
echo "wrote bench/results.json"
