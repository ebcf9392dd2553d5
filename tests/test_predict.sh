#!/usr/bin/env bash
# test_predict.sh -- `nkern predict` on kernels written by `nkern kernel`, against numpy:
# the NNGP posterior by numpy.linalg.solve, the NTK gradient flow (mean and covariance, eq. 16
# of Lee et al. 2019) by numpy's eigh; bad input exits 2 with a message.
. "$(dirname "$0")/lib.sh"

"$PY" - "$T" <<'EOF'
import sys, numpy as np
d = sys.argv[1]; rng = np.random.default_rng(1)
np.save(f"{d}/xtr.npy", rng.standard_normal((30, 5)))
np.save(f"{d}/xte.npy", rng.standard_normal((8, 5)))
np.save(f"{d}/y.npy", rng.standard_normal((30, 2)))
np.save(f"{d}/lab.npy", rng.integers(0, 3, 30).astype(np.float64))
np.save(f"{d}/labte.npy", rng.integers(0, 3, 8).astype(np.float64))
np.save(f"{d}/bad.npy", np.ones((29, 29)))
EOF

K() { "$NKERN" kernel --arch "dense relu dense relu dense" --b-std 0.1 --get both --quiet "$@"; }
K --x1 "$T/xtr.npy" --out "$T/tr" && K --x1 "$T/xte.npy" --x2 "$T/xtr.npy" --out "$T/te" &&
    K --x1 "$T/xte.npy" --out "$T/tt" || bad "nkern kernel failed"

for N in "$NKERN" "$NKERN_SAN"; do
    if $N predict --k-train "$T/tr.nngp.npy" --k-test "$T/te.nngp.npy" --k-test-test "$T/tt.nngp.npy" \
        --y "$T/y.npy" --reg 1e-3 --cov full --out "$T/gp" 2>"$T/err"; then ok; else bad "$N gp: $(cat "$T/err")"; fi
    if $N predict --ntk-train "$T/tr.ntk.npy" --ntk-test "$T/te.ntk.npy" --k-train "$T/tr.nngp.npy" \
        --k-test "$T/te.nngp.npy" --k-test-test "$T/tt.nngp.npy" --y "$T/y.npy" --reg 1e-2 --lr 0.5 \
        --time 0,1,inf --cov diag --out "$T/flow" 2>"$T/err"; then ok; else bad "$N flow: $(cat "$T/err")"; fi
    res=$("$PY" - "$T" <<'EOF'
import sys, numpy as np
d = sys.argv[1]; L = lambda n: np.load(f"{d}/{n}.npy")
K, Ks, Kss, Th, Ths, Y = L("tr.nngp"), L("te.nngp"), L("tt.nngp"), L("tr.ntk"), L("te.ntk"), L("y")
n = len(K)
A = K + 1e-3 * np.trace(K) / n * np.eye(n)
m_ref = Ks @ np.linalg.solve(A, Y)
c_ref = Kss - Ks @ np.linalg.solve(A, Ks.T)
e_gp = max(abs(L("gp.mean") - m_ref).max(), abs(L("gp.cov") - c_ref).max())
Tr = Th + 1e-2 * np.trace(Th) / n * np.eye(n)
lam, V = np.linalg.eigh(Tr)
mean, var = L("flow.mean"), L("flow.cov")
e_fl = 0.0
for i, t in enumerate([0.0, 1.0, np.inf]):
    g = 1 / lam if np.isinf(t) else -np.expm1(-lam * 0.5 * t) / lam
    B = Ths @ V @ np.diag(g) @ V.T
    cov = Kss + B @ K @ B.T - B @ Ks.T - Ks @ B.T
    e_fl = max(e_fl, abs(mean[i] - B @ Y).max(), abs(var[i] - np.diag(cov)).max())
print(f"{e_gp:.3g} {e_fl:.3g} {mean.shape} {var.shape}")
EOF
)
    read -r e_gp e_fl shape <<<"$res"; echo "  $N vs numpy: gp err $e_gp, flow err $e_fl"
    if "$PY" -c "import sys; sys.exit(not ($e_gp < 1e-9 and $e_fl < 1e-9))"; then ok; else bad "$N vs numpy: $res"; fi
    if grep -q "(3, 8, 2) (3, 8)" <<<"$res"; then ok; else bad "$N output shapes: $res"; fi

    out=$($N predict --k-train "$T/tr.nngp.npy" --k-test "$T/te.nngp.npy" --y "$T/lab.npy" --one-hot \
        --labels-test "$T/labte.npy" --reg 1e-3 --out "$T/cls" 2>&1)
    if grep -qE "^accuracy [01]\.[0-9]{4}, mse" <<<"$out"; then ok; else bad "$N one-hot: $out"; fi

    # bad input: exit 2 and a message
    expect() {
        local name=$1 pat=$2; shift 2
        local out; out=$("$@" 2>&1); local rc=$?
        if [ "$rc" -eq 2 ] && grep -qE -- "$pat" <<<"$out"; then ok; else bad "$N $name: exit $rc: $out"; fi
    }
    expect "targets count" "29 targets|targets for" $N predict --k-train "$T/tr.nngp.npy" --k-test "$T/te.nngp.npy" \
        --y "$T/bad.npy" --out "$T/x"
    expect "singular" "singular.*--reg" $N predict --k-train "$T/bad.npy" --k-test "$T/bad.npy" \
        --y "$T/bad.npy" --out "$T/x"
    expect "cov without test-test" "k-test-test" $N predict --k-train "$T/tr.nngp.npy" --k-test "$T/te.nngp.npy" \
        --y "$T/y.npy" --cov diag --out "$T/x"
    expect "ntk half given" "both --ntk-train" $N predict --ntk-train "$T/tr.ntk.npy" --y "$T/y.npy" --out "$T/x"
done

summary test_predict.sh
