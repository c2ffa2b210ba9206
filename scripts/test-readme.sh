#!/usr/bin/env bash
# Runs every command the README shows, as written, on a fresh copy of the
# repository (its tracked and new files, nothing built, nothing from
# earlier runs): each ```sh block of README.md runs in bash -e from the
# copy's root, in order, bounded in time; processes a block leaves in the
# background (servers) are killed when it ends. The README's test command
# (`bash scripts/test.sh`, the caller of this script) is not run again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/test-readme.XXXXXX")"
COPY="$WORK/repo"
cleanup() {
    [ -n "${PGID:-}" ] && kill -- "-$PGID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
BLOCK_TIMEOUT="${README_BLOCK_TIMEOUT:-1200}"

mkdir -p "$COPY"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    xargs -0 cp --parents -t "$COPY")
# The copy builds everything itself.
unset CARGO_TARGET_DIR

python3 - "$ROOT/README.md" "$WORK/blocks" <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
out = sys.argv[2]
os.makedirs(out)
blocks = re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)
n = 0
for b in blocks:
    if re.search(r"^\s*bash scripts/test\.sh\s*$", b, re.M):
        continue
    n += 1
    with open(os.path.join(out, "%02d.sh" % n), "w") as f:
        f.write(b)
print("test-readme: %d blocks to run (of %d)" % (n, len(blocks)))
PY

fails=0
for block in "$WORK"/blocks/*.sh; do
    name="$(basename "$block" .sh)"
    echo "test-readme: block $name:"
    sed 's/^/    /' "$block"
    log="$WORK/$name.log"
    # A session of its own, so everything it started can be killed after.
    set +e
    (cd "$COPY" && exec setsid --wait timeout --kill-after=10 "$BLOCK_TIMEOUT" bash -e "$block") >"$log" 2>&1 &
    pid=$!
    PGID=$pid
    wait "$pid"
    rc=$?
    set -e
    kill -- "-$PGID" 2>/dev/null || true
    PGID=""
    if [ "$rc" = 0 ]; then
        echo "test-readme: ok: block $name"
    else
        echo "test-readme: FAIL: block $name exited $rc; its output:" >&2
        tail -n 40 "$log" | sed 's/^/    /' >&2
        fails=$((fails + 1))
    fi
done
[ "$fails" = 0 ] || { echo "test-readme: $fails block(s) failed" >&2; exit 1; }
echo "test-readme: every README command ran"
