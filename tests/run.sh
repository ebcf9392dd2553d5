#!/usr/bin/env bash
# Run every test: C unit tests (normal and ASan/UBSan builds), then shell and Python tests.
# Each test prints "NAME: N passed, N failed"; this sums them into the closing line.
set -u
cd "$(dirname "$0")/.."
export NKERN=build/nkern NKERN_SAN=build/nkern-san PY=/usr/bin/python3
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
pass=0; fail=0; broken=()
run() {
    local name=$1; shift
    local out; out=$("$@" 2>&1); local rc=$?
    local line; line=$(printf '%s\n' "$out" | grep -E '^[A-Za-z0-9_./-]+: [0-9]+ passed, [0-9]+ failed' | tail -1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out" | tail -20
        echo "$name: no summary line (exit $rc)"; fail=$((fail+1)); broken+=("$name"); return
    fi
    local p f; p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line"); f=$(sed -E 's/.*passed, ([0-9]+) failed.*/\1/' <<<"$line")
    pass=$((pass+p)); fail=$((fail+f))
    if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then printf '%s\n' "$out" | grep -E 'FAIL|ERROR|error|Sanitizer' | head -30; broken+=("$name"); [ "$f" -eq 0 ] && fail=$((fail+1)); fi
    echo "$line"
}
for t in build/tests/test_*; do run "$(basename "$t")" "$t"; done
for t in build/san-tests/test_*; do run "san/$(basename "$t")" env NK_TEST_QUICK=1 "$t"; done
for t in tests/test_*.sh; do [ -e "$t" ] && run "$(basename "$t")" bash "$t"; done
for t in tests/test_*.py; do [ -e "$t" ] && run "$(basename "$t")" "$PY" "$t"; done
[ ${#broken[@]} -gt 0 ] && echo "failing: ${broken[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
