#!/usr/bin/env bash
# The docs cannot rot: every fenced block opened with ```sh run in README.md and docs/*.md is
# run with bash -e from a fresh temporary directory, with the repo's build/ first on PATH (so
# `nkern` is the built tool), /usr/bin next (Debian's python3 with numpy, cffi, scikit-learn),
# PYTHONPATH=python (the package as if installed), NKERN_ROOT = the repo root and matplotlib on
# its Agg backend.  Each block is one test, named FILE:LINE in failures.  Relative links in the
# same files must point to existing files (one test per file).  Prints
# "test_docs: N passed, N failed".
set -u
cd "$(dirname "$0")/.."
root=$PWD
pass=0; fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# documentation that other branches add; a link to it may precede the file
pending="docs/finite-width.md docs/monte-carlo.md docs/cluster.md"

for f in README.md docs/*.md; do
    [ -f "$f" ] || continue
    # the blocks: "LINE" lines starting each, the block's text in $tmp/blocks/FILE.LINE.sh
    rm -rf "$tmp/blocks"; mkdir -p "$tmp/blocks"
    awk -v dir="$tmp/blocks" '
        !inb && /^```sh run[ \t]*$/ { inb = 1; start = NR + 1; out = dir "/" NR + 1 ".sh"; printf "" > out; next }
        inb && /^```[ \t]*$/ { inb = 0; close(out); print start; next }
        inb { print > out }
        END { if (inb) print "unterminated " start }' "$f" > "$tmp/starts"
    if grep -q unterminated "$tmp/starts"; then
        echo "FAIL: $f:$(grep unterminated "$tmp/starts" | cut -d' ' -f2): a sh run block is not closed"; fail=$((fail+1))
    fi
    t0=$(date +%s.%N); nblocks=0
    for line in $(grep -v unterminated "$tmp/starts"); do
        nblocks=$((nblocks+1))
        work=$(mktemp -d "$tmp/run.XXXXXX")
        out=$(cd "$work" && PATH="$root/build:/usr/bin:$PATH" NKERN_ROOT="$root" PYTHONPATH="$root/python" \
              MPLBACKEND=Agg timeout 300 bash -e "$tmp/blocks/$line.sh" 2>&1 </dev/null); rc=$?
        if [ "$rc" -eq 0 ]; then pass=$((pass+1))
        else
            echo "FAIL: $f:$line: the sh run block starting here exited with status $rc; its last output:"
            printf '%s\n' "$out" | tail -15 | sed 's/^/    /'
            fail=$((fail+1))
        fi
        rm -rf "$work"
    done
    # relative links: [text](path) or [text](path#anchor), outside code
    bad=""
    for link in $(grep -v '^    ' "$f" | grep -oE '\]\([^)#: ]+(#[^)]*)?\)' | sed -E 's/^\]\(([^)#]*).*/\1/' | sort -u); do
        target=$(cd "$(dirname "$f")" && realpath -m "$link")
        rel=${target#"$root"/}
        [ -e "$target" ] && continue
        case " $pending " in *" $rel "*) continue ;; esac
        bad="$bad $link"
    done
    if [ -n "$bad" ]; then echo "FAIL: $f: links to missing files:$bad"; fail=$((fail+1)); else pass=$((pass+1)); fi
    printf '%s: %d blocks in %s s\n' "$f" "$nblocks" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
done
echo "test_docs: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
