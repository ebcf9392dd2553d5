#!/usr/bin/env bash
# test_classify_choice.sh -- issue 17's classify options on tiny synthetic sets: --first,
# --test-data, --augment flip, --search and --prep zca:E1,E2 (chosen on the training set's
# held-out part: the test labels never change a choice), the default setting, arch presets.
. "$(dirname "$0")/lib.sh"
tmp=$T
run() { out=$("$@" 2>"$tmp/err"); rc=$?; }

# Signals of 6 positions x 1 channel: class 0 rises left to right, class 1 falls (a mirror pair,
# so flip augmentation makes the two classes one); 80 samples, then 10 of a third class (label 2).
# A test file with the same signals and labels swapped; a flat (N, 6) copy.
"$PY" - "$tmp" <<'EOF2'
import numpy as np, sys
d = sys.argv[1]
r = np.random.default_rng(3)
n = 90
y = np.array([i % 2 for i in range(80)] + [2] * 10, dtype=np.float64)
ramp = np.linspace(-1, 1, 6)
x = np.stack([(ramp if c == 0 else -ramp if c == 1 else np.ones(6)) + 0.2 * r.standard_normal(6) for c in y])
np.save(d + "/x.npy", x[:, :, None])
np.save(d + "/y.npy", y)
np.save(d + "/y_swapped.npy", np.where(y == 2, 2, 1 - y))
np.save(d + "/x_flat.npy", x)
EOF2
D="npy:$tmp/x.npy,$tmp/y.npy"

# --first: the first 50 train, the next 20 test (all of classes 0 and 1: two output columns)
run "$NKERN" classify --data "$D" --first --train 50 --test 20 --arch "conv(3) relu flatten dense" --kernel ntk --quiet --out "$tmp/p.npy"
check "--first rc 0 (rc $rc: $(head -2 "$tmp/err"))" [ "$rc" -eq 0 ]
check "--first: perfect accuracy: $out" grep -q "accuracy 1.0000" <<<"$out"
check "--first: two classes only, (1, 20, 2) predictions" [ "$(stat -c %s "$tmp/p.npy" 2>/dev/null)" = $((128 + 20*2*8)) ]
run "$NKERN" classify --data "$D" --first --train 50 --test 20 --arch "conv(3) relu flatten dense" --kernel ntk --quiet --out "$tmp/p2.npy"
check "--first is deterministic" cmp -s "$tmp/p.npy" "$tmp/p2.npy"

# --test-data: the test set comes from the other file (labels swapped: accuracy 0)
run "$NKERN" classify --data "$D" --test-data "npy:$tmp/x.npy,$tmp/y_swapped.npy" --first --train 60 --test 20 \
    --arch "conv(3) relu flatten dense" --kernel nngp --quiet
check "--test-data rc 0 (rc $rc: $(head -2 "$tmp/err"))" [ "$rc" -eq 0 ]
check "--test-data: swapped labels score 0: $out" grep -q "accuracy 0.0000" <<<"$out"

# --augment flip: the mirror-pair classes become indistinguishable (chance), without it perfect
for aug in none flip; do
    run "$NKERN_SAN" classify --data "$D" --first --train 60 --test 20 --arch "b=0.1 conv(3) relu conv(3) relu gap dense" \
        --kernel ntk --augment $aug --reg 1e-3 --quiet
    check "--augment $aug rc 0 (rc $rc: $(head -2 "$tmp/err"))" [ "$rc" -eq 0 ]
    acc=$(sed -n 's/.*accuracy \([0-9.]*\).*/\1/p' <<<"$out")
    if [ $aug = none ]; then check "no augmentation: perfect ($acc)" [ "$acc" = 1.0000 ]
    else check "flip-invariant kernel cannot tell mirror images apart ($acc)" awk -v a="${acc:-1}" 'BEGIN{exit !(a < 0.8)}'; fi
done
run "$NKERN" classify --data "npy:$tmp/x_flat.npy,$tmp/y.npy" --train 40 --test 20 --arch "dense relu dense" --augment flip
check "flip on flat data: exit 2" [ "$rc" -eq 2 ] && check "message says spatial" grep -q "spatial" "$tmp/err"

# --search: one line per candidate (2 x 2), a choice; identical with swapped test labels
S=(--first --train 60 --test 20 --arch "b={b} conv(3) relu [conv(3) relu]*{depth} {readout} dense" --kernel ntk
   --search "b=0,0.2 depth=0,1 readout=gap" --reg 1e-4,1e-2)
run "$NKERN_SAN" classify --data "$D" "${S[@]}"
check "--search (sanitizers) rc 0 (rc $rc: $(head -3 "$tmp/err"))" [ "$rc" -eq 0 ]
run "$NKERN" classify --data "$D" "${S[@]}"
check "--search rc 0 (rc $rc: $(head -3 "$tmp/err"))" [ "$rc" -eq 0 ]
check "--search: four candidates" [ "$(grep -c '^search: b=' <<<"$out")" -eq 4 ]
check "--search: a choice" grep -q '^search: chose b=' <<<"$out"
# (without the seconds each candidate took)
grep '^search' <<<"$out" | sed 's/, [0-9.]* s)$/)/' > "$tmp/s1"
grep '^test' <<<"$out" > "$tmp/t1"
run "$NKERN" classify --data "$D" --test-data "npy:$tmp/x.npy,$tmp/y_swapped.npy" "${S[@]}"
grep '^search' <<<"$out" | sed 's/, [0-9.]* s)$/)/' > "$tmp/s2"
grep '^test' <<<"$out" > "$tmp/t2"
check "--search never reads test labels: same candidates' scores and choice with swapped test labels" cmp -s "$tmp/s1" "$tmp/s2"
differ() { ! cmp -s "$1" "$2"; }
check "(while the test scores do change)" differ "$tmp/t1" "$tmp/t2"

# --prep zca:E1,E2: chosen like a search key
run "$NKERN" classify --data "$D" --first --train 60 --test 20 --arch "conv(3) relu flatten dense" --prep zca:0.1,1 --kernel ntk --quiet
check "zca list rc 0 (rc $rc: $(head -2 "$tmp/err"))" [ "$rc" -eq 0 ]
check "zca list: two candidates and a choice" [ "$(grep -c '^search: .*prep zca:' <<<"$out")" -eq 3 ]

# errors
run "$NKERN" classify --data "$D" --first --balanced --arch dense
check "--first with --balanced: exit 2" [ "$rc" -eq 2 ]
run "$NKERN" classify --data "$D" --arch dense --augment rotate
check "bad --augment: exit 2" [ "$rc" -eq 2 ] && check "message names the values" grep -q "none, flip, shift:S" "$tmp/err"
run "$NKERN" classify --data "$D" --arch "conv(3) relu gap dense" --augment shift:1 --train 40 --test 10
check "shift on a zero-padded conv: exit 2" [ "$rc" -eq 2 ] && check "message says circular" grep -q "circular" "$tmp/err"
run "$NKERN" classify --data "$D" --search "depth=2 colour=red"
check "bad --search key: exit 2" [ "$rc" -eq 2 ] && check "message names the keys" grep -q "w, b, depth, readout, zca" "$tmp/err"
run "$NKERN" classify --data "$D" --search "depth="
check "--search key without values: exit 2" [ "$rc" -eq 2 ]
run "$NKERN" classify --data "$D" --test-data fashion-mnist --arch dense --train 10 --test 10
check "npy train with image-set test: exit 2" [ "$rc" -eq 2 ]

# presets: myrtle10 is nine conv layers and a global pool; cnn_gap(2) is the same kernel as its spec
run "$NKERN" arch myrtle10 --input 32x32x3 --n 10
check "myrtle10 has 9 convs (got $(grep -c ' conv ' <<<"$out"))" [ "$(grep -c ' conv ' <<<"$out")" -eq 9 ]
check "myrtle10 pools to 8x8 before gap" grep -q "avgpool 2x2 s2,2 *8x8" <<<"$out"
run "$NKERN" kernel --arch "cnn_gap(2)" --x1 "$tmp/x.npy" --n1 6 --out "$tmp/a.npy" --quiet
run "$NKERN" kernel --arch "[conv(3) relu]*2 gap dense" --x1 "$tmp/x.npy" --n1 6 --out "$tmp/b.npy" --quiet
check "cnn_gap(2) = [conv(3) relu]*2 gap dense" cmp -s "$tmp/a.npy" "$tmp/b.npy"
run "$NKERN" arch "myrtle5(2)" --input 28x28x1
check "myrtle5(2): exit 2" [ "$rc" -eq 2 ]

# the default setting on Fashion-MNIST (a tiny run)
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    run "$NKERN" classify --data fashion-mnist --first --train 40 --test 20
    check "default rc 0 (rc $rc: $(head -2 "$tmp/err"))" [ "$rc" -eq 0 ]
    check "default setting named" grep -q "^setting: .*(the default" "$tmp/err"
    check "default scores" grep -q "^test: ntk" <<<"$out"
fi

summary test_classify_choice.sh
