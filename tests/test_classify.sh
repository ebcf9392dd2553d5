#!/usr/bin/env bash
# test_classify.sh -- `nkern classify` end to end on a synthetic .npy data set (two separated
# clusters: every method must classify them perfectly), option errors, and Fashion-MNIST
# where Debian's package is installed.
. "$(dirname "$0")/lib.sh"
tmp=$T

# Two clusters in R^4 around +-(1,1,1,1), 40 per class; labels 0 / 1.
"$PY" - "$tmp" <<'EOF'
import random, struct, sys
def save(path, shape, values):
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%s), }" % "".join("%d, " % s for s in shape)
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%dd" % len(values), *values))
random.seed(3)
x, y = [], []
for i in range(80):
    c = i % 2
    y.append(float(c))
    x += [(1 if c else -1) + random.gauss(0, 0.3) for _ in range(4)]
d = sys.argv[1]
save(d + "/x.npy", (80, 4), x)
save(d + "/y.npy", (80,), y)
save(d + "/y_short.npy", (79,), y[:79])
save(d + "/x1d.npy", (80, 4, 1), x)   # the same points as 1-D signals of 4 positions
EOF

run() { out=$("$@" 2>"$tmp/err"); rc=$?; }

run "$NKERN" classify --data "npy:$tmp/x.npy,$tmp/y.npy" --train 50 --test 20 --arch "dense relu dense" --kernel nngp --quiet
check "nngp rc 0 (rc $rc: $(cat "$tmp/err"))" [ "$rc" -eq 0 ]
check "nngp perfect accuracy: $out" grep -q "accuracy 1.0000" <<<"$out"

run "$NKERN" classify --data "npy:$tmp/x.npy,$tmp/y.npy" --train 50 --test 20 --arch "dense erf dense" --kernel ntk \
    --reg 1e-6,1e-3,1e-1 --val 0.2 --time 0,5,inf --balanced --seed 4 --out "$tmp/pred.npy"
check "ntk rc 0 (rc $rc: $(cat "$tmp/err"))" [ "$rc" -eq 0 ]
check "three validation lines" [ "$(grep -c '^validation: reg' <<<"$out")" -eq 3 ]
check "a regularization is chosen" grep -q "^validation: chose reg" <<<"$out"
check "t=0 predicts the prior (zeros)" grep -q "t=0 .*mse 0.41000" <<<"$out"
check "t=inf perfect accuracy" grep -q "t=inf .*accuracy 1.0000" <<<"$out"
check "phase times" grep -q "^time: load .* kernel .* solve" <<<"$out"
# (T=3, M=20, k=2) float64 after a 128-byte header
check "predictions written" [ "$(stat -c %s "$tmp/pred.npy" 2>/dev/null)" = $((128 + 3*20*2*8)) ]

run "$NKERN_SAN" classify --data "npy:$tmp/x.npy,$tmp/y.npy" --train 30 --test 10 --arch "dense relu dense" --kernel ntk \
    --reg 1e-4,1e-2 --prep standardize --quiet
check "sanitizer build clean (rc $rc: $(head -3 "$tmp/err"))" [ "$rc" -eq 0 ]

# --kernel both: one kernel computation, the same answers as two separate runs
for k in nngp ntk; do
    run "$NKERN" classify --data "npy:$tmp/x.npy,$tmp/y.npy" --train 50 --test 20 --arch "dense erf dense" --kernel $k \
        --reg 1e-6,1e-1 --seed 2 --quiet
    grep '^test:' <<<"$out" > "$tmp/sep.$k"
done
run "$NKERN_SAN" classify --data "npy:$tmp/x.npy,$tmp/y.npy" --train 50 --test 20 --arch "dense erf dense" --kernel both \
    --reg 1e-6,1e-1 --seed 2 --quiet --out "$tmp/both.npy"
check "both rc 0 (rc $rc: $(head -3 "$tmp/err"))" [ "$rc" -eq 0 ]
check "both = nngp then ntk: $out" [ "$(grep '^test:' <<<"$out")" = "$(cat "$tmp/sep.nngp" "$tmp/sep.ntk")" ]
check "both writes two prediction files" [ -s "$tmp/both.nngp.npy" ] && [ -s "$tmp/both.ntk.npy" ]

# --precision f32: a conv stack (the plane engine) in float32 classifies the clusters as float64
for prec in f64 f32; do
    run "$NKERN_SAN" classify --data "npy:$tmp/x1d.npy,$tmp/y.npy" --train 40 --test 20 --arch "b=0.1 conv(3) relu conv(3) relu gap dense" \
        --kernel both --seed 1 --precision $prec --quiet
    check "conv stack, --precision $prec (rc $rc: $(head -3 "$tmp/err"))" [ "$rc" -eq 0 ]
    check "conv stack, --precision $prec: perfect accuracy: $out" [ "$(grep -c 'accuracy 1.0000' <<<"$out")" -eq 2 ]
done

# Errors: exit status 2 and a message naming the problem.
run "$NKERN" classify --data bogus --arch dense
check "unknown data source" [ "$rc" -eq 2 ] && check "message names sources" grep -q "fashion-mnist, cifar10:DIR or npy" "$tmp/err"
run "$NKERN" classify --data "npy:$tmp/x.npy,$tmp/y.npy" --arch dense --kernel rbf
check "unknown kernel" [ "$rc" -eq 2 ]
run "$NKERN" classify --data "npy:$tmp/x.npy,$tmp/y.npy" --arch dense --precision f128
check "bad precision" [ "$rc" -eq 2 ] && check "message names --precision and its values" grep -q -- "--precision: 'f128' (use f64 or f32)" "$tmp/err"
run "$NKERN" classify --data "npy:$tmp/x.npy,$tmp/y.npy" --arch dense --train 70 --test 20
check "too many samples" [ "$rc" -eq 2 ] && check "message says fewer" grep -q "fewer than" "$tmp/err"
run "$NKERN" classify --data "npy:$tmp/x.npy,$tmp/y_short.npy" --arch dense --train 10 --test 10
check "labels must match samples" [ "$rc" -eq 2 ] && check "message on labels" grep -q "labels" "$tmp/err"
run "$NKERN" classify --data "npy:$tmp/x.npy,$tmp/y.npy" --arch dense --prep zca:abc
check "bad zca eps" [ "$rc" -eq 2 ]
run "$NKERN" classify --data "npy:$tmp/x.npy,$tmp/y.npy" --arch dense --time 1,-2
check "negative time" [ "$rc" -eq 2 ]
run "$NKERN" classify --data "cifar10:$tmp/none" --arch dense
check "missing CIFAR directory" [ "$rc" -ne 0 ] && check "message names the batch file" grep -q "data_batch_1.bin" "$tmp/err"

# CIFAR-10 path on tiny synthetic batches: 5 x 4 training records, 4 test records.
mkdir -p "$tmp/cifar"
"$PY" - "$tmp/cifar" <<'EOF2'
import random, sys
random.seed(5)
def batch(path, n):
    with open(path, "wb") as f:
        for i in range(n):
            f.write(bytes([i % 2] + [random.randrange(256) for _ in range(3072)]))
for b in range(1, 6):
    batch(f"{sys.argv[1]}/data_batch_{b}.bin", 4)
batch(f"{sys.argv[1]}/test_batch.bin", 4)
EOF2
run "$NKERN_SAN" classify --data "cifar10:$tmp/cifar" --train 12 --test 4 --balanced --arch "flatten dense relu dense" \
    --kernel nngp --prep zca:0.5 --quiet
check "CIFAR-10 synthetic run (rc $rc: $(head -3 "$tmp/err"))" [ "$rc" -eq 0 ]
check "CIFAR-10 sample shape" grep -q "accuracy" <<<"$out"

if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    run "$NKERN" classify --data fashion-mnist --train 200 --test 200 --balanced --arch "flatten dense relu dense" \
        --kernel ntk --reg 1e-3 --prep standardize --quiet
    acc=$(sed -n 's/.*accuracy \([0-9.]*\).*/\1/p' <<<"$out" | tail -1)
    check "Fashion-MNIST MLP accuracy > 0.65 (got '$acc', rc $rc)" awk -v a="${acc:-0}" 'BEGIN{exit !(a > 0.65)}'
else
    echo "skipping Fashion-MNIST: not installed"
fi

summary test_classify.sh
