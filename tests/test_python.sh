#!/usr/bin/env bash
# The Python package's tests (python/tests, run by pytest from Debian's python3-pytest, the
# same as `make python-test`), summarized in the line tests/run.sh counts:
# "test_python: N passed, N failed" (errors, and a run that reports nothing, count as failures).
set -u
cd "$(dirname "$0")/.."
out=$(/usr/bin/python3 -m pytest -q -p no:cacheprovider python/tests 2>&1); rc=$?
printf '%s\n' "$out" | grep -vE '^\.*s*\.* *\[ *[0-9]+%\]$' | tail -40
summary=$(printf '%s\n' "$out" | grep -E '^=* ?[0-9]+ (passed|failed|error)' | tail -1)
[ -z "$summary" ] && summary=$(printf '%s\n' "$out" | grep -E '[0-9]+ (passed|failed)' | tail -1)
count() { grep -oE "[0-9]+ $1" <<<"$summary" | grep -oE '^[0-9]+' || echo 0; }
passed=$(count passed); failed=$(( $(count failed) + $(count error) ))
[ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1   # pytest failed without a countable failure
echo "test_python: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
