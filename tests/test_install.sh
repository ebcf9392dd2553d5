#!/usr/bin/env bash
# Installation: `make install PREFIX=...` (versioned soname, headers, CLI, man page, pkg-config
# file; a C program built with pkg-config runs against the installed library), `make uninstall`,
# and `pip install ./python` into a --target directory and into a venv with the system's
# packages (offline: --no-build-isolation --no-deps --no-index), each importing its own
# library copy; NKERN_LIB overrides it.
set -u
cd "$(dirname "$0")/.."
root=$PWD
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok; else bad "$what"; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
PY=/usr/bin/python3

make --no-print-directory -s install PREFIX="$tmp/prefix" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; bad "make install"; }
p=$tmp/prefix
ver=$(sed -n 's/^#define NK_VERSION "\(.*\)"/\1/p' include/nkern.h)
check "library file libnkern.so.$ver" test -f "$p/lib/libnkern.so.$ver"
check "soname link libnkern.so.0" test "$(readlink "$p/lib/libnkern.so.0")" = "libnkern.so.$ver"
check "dev link libnkern.so" test -L "$p/lib/libnkern.so"
check "SONAME libnkern.so.0" bash -c "readelf -d '$p/lib/libnkern.so.$ver' | grep -q 'SONAME.*\[libnkern.so.0\]'"
for h in include/*.h; do check "header $h" cmp "$h" "$p/include/$(basename "$h")"; done
check "CLI --version" bash -c "'$p/bin/nkern' --version | grep -qx 'nkern $ver'"
check "man page renders" bash -c "MANWIDTH=80 man -l '$p/share/man/man1/nkern.1' 2>/dev/null | grep -q 'exact infinite-width'"
check "nkern.pc version" bash -c "PKG_CONFIG_PATH='$p/lib/pkgconfig' pkg-config --modversion nkern | grep -qx '$ver'"

# a C program against the installed library: the relu NNGP of one hidden layer at x = x'
# (|x|^2 = D, K0 = 1) is 1/2 (E[relu(u)^2] for u ~ N(0, 1)); no bias, NTK parameterization
cat >"$tmp/use.c" <<'C'
#include <nkern.h>
#include <math.h>
#include <stdio.h>
int main(void)
{
    nk_error err = {{0}};
    nk_arch *a = NULL; nk_plan *p = NULL;
    size_t in = 2;
    double x[2] = {1.0, 1.0};
    nk_array X = {x, 2, {1, 2, 0, 0}}, K = {0};
    nk_kernel_opts o; nk_kernel_opts_default(&o); o.get = NK_GET_NNGP;
    if (nk_arch_parse("dense relu dense", NULL, &a, &err) || nk_plan_create(a, 1, &in, &p, &err) ||
        nk_kernel_matrix(p, &X, NULL, &o, &K, NULL, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    printf("%.17g\n", K.data[0]);
    int bad = fabs(K.data[0] - 0.5) > 1e-15;
    nk_array_free(&K); nk_plan_free(p); nk_arch_free(a);
    return bad;
}
C
if cc $(PKG_CONFIG_PATH="$p/lib/pkgconfig" pkg-config --cflags nkern) "$tmp/use.c" -o "$tmp/use" \
      $(PKG_CONFIG_PATH="$p/lib/pkgconfig" pkg-config --libs nkern) -lm 2>"$tmp/cc.log"; then
    ok
    check "program runs against the installed libnkern.so.0" env LD_LIBRARY_PATH="$p/lib" "$tmp/use"
    check "program loads the installed copy" bash -c "LD_LIBRARY_PATH='$p/lib' ldd '$tmp/use' | grep -q '$p/lib/libnkern.so.0'"
else
    cat "$tmp/cc.log"; bad "compile with pkg-config --cflags --libs nkern"
fi
make --no-print-directory -s uninstall PREFIX="$tmp/prefix" >/dev/null 2>&1
check "make uninstall leaves no files" test -z "$(find "$p" -type f -o -type l)"

# pip: into a --target directory, then into a venv that sees Debian's numpy/cffi/sklearn
pipargs=(--quiet --disable-pip-version-check --no-build-isolation --no-deps --no-index)
if $PY -m pip install "${pipargs[@]}" --target "$tmp/target" ./python >"$tmp/pip.log" 2>&1; then
    ok
    check "pip --target: own library copy" bash -c "cd '$tmp' && PYTHONPATH='$tmp/target' $PY -c \
        'import nkern; assert nkern.LIBRARY_PATH == \"$tmp/target/nkern/libnkern.so\", nkern.LIBRARY_PATH'"
else
    cat "$tmp/pip.log"; bad "pip install --target"
fi
if $PY -m venv --system-site-packages --without-pip "$tmp/venv" 2>"$tmp/venv.log" &&
   "$tmp/venv/bin/python" -m pip install "${pipargs[@]}" ./python >"$tmp/pip2.log" 2>&1; then
    ok
    cat >"$tmp/venv_check.py" <<PYEOF
import numpy as np, nkern, nkern.sklearn
assert nkern.LIBRARY_PATH.startswith("$tmp/venv/"), nkern.LIBRARY_PATH
x = np.arange(12.0).reshape(3, 4)
np.save("x.npy", x)
np.save("k.npy", nkern.kernel("b=0.1 dense erf dense", x))
PYEOF
    check "venv: import nkern, its kernel equals the CLI's" bash -c "cd '$tmp' && '$tmp/venv/bin/python' venv_check.py &&
        '$root/build/nkern' kernel --arch 'b=0.1 dense erf dense' --x1 x.npy --get ntk --out k2.npy --quiet && cmp k.npy k2.npy"
else
    cat "$tmp/venv.log" "$tmp/pip2.log" 2>/dev/null; bad "pip install into a venv"
fi
check "NKERN_LIB overrides" bash -c "cd '$tmp' && NKERN_LIB='$root/build/libnkern.so.0' PYTHONPATH='$tmp/target' $PY -c \
    'import nkern; assert nkern.LIBRARY_PATH == \"$root/build/libnkern.so.0\"'"
check "a bad NKERN_LIB is an OSError naming it" bash -c "cd '$tmp' && NKERN_LIB=/nonexistent/libnkern.so PYTHONPATH='$tmp/target' $PY -c '
try:
    import nkern
except OSError as e:
    assert \"/nonexistent/libnkern.so\" in str(e) and \"NKERN_LIB\" in str(e), e
else:
    raise SystemExit(1)'"
echo "test_install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
