#!/usr/bin/env bash
# The benchmark harness: ours against real libutp, side by side.
#
#   bench/run.sh --smoke   # CI: small sizes, a few seconds; exits non-zero only
#                          # on functional errors (transfer not byte-exact, a
#                          # tool failing), never on slow numbers; no plotting
#   bench/run.sh --full    # everything; writes BENCHMARKS.md, bench/plots/*.png
#                          # and bench/results/latest.json (needs root for the
#                          # network namespaces; ~15-25 min)
#
# Full-run knobs: BENCH_BULK_MB (default 1024), BENCH_ONLY (bulk,latency,scale,testbed,bindings,drops),
# BENCH_RUNS (5), BENCH_SCALE (1,10,100,1000,10000), BENCH_SCALE_RUNS (5), BENCH_DROP_MB (20,100),
# BENCH_DROP_RUNS (5). See bench/README.md.
#
# Traffic stays on 127.0.0.1 and inside network namespaces this script
# creates (10.201.0.0/24, 10.202.{1,2}.0/24); they and every process are
# removed on exit, also on failure or Ctrl-C. Every step is time-bounded.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE="${1:---smoke}"
case "$MODE" in
    --smoke|--full) ;;
    *) echo "usage: bench/run.sh [--smoke|--full]" >&2; exit 2 ;;
esac

# GNU time for CPU seconds and peak RSS.
if [ ! -x /usr/bin/time ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; } >/dev/null \
            || { echo "bench: cannot install time" >&2; exit 1; }
    else
        echo "bench: /usr/bin/time (GNU time) is needed: apt-get install time" >&2; exit 1
    fi
fi
command -v python3 >/dev/null || { echo "bench: python3 is needed" >&2; exit 1; }

STATE="$(mktemp "${TMPDIR:-/tmp}/utp-bench-state.XXXXXX")"
PY_PID=""
cleanup() {
    # The harness cleans up after itself; this is the backstop if it was killed.
    if [ -n "$PY_PID" ] && kill -0 "$PY_PID" 2>/dev/null; then
        kill -TERM "$PY_PID" 2>/dev/null; sleep 2; kill -KILL "$PY_PID" 2>/dev/null
    fi
    if [ -s "$STATE" ]; then
        while read -r ns; do
            [ -n "$ns" ] || continue
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
            ip netns del "$ns" 2>/dev/null
        done <"$STATE"
    fi
    rm -f "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$MODE" = --smoke ]; then LIMIT=300; else LIMIT=3600; fi
BENCH_STATE_FILE="$STATE" timeout --foreground -k 10 "$LIMIT" \
    python3 bench/harness.py "$MODE" --cmd "bench/run.sh $MODE" &
PY_PID=$!
wait "$PY_PID"
rc=$?
PY_PID=""
exit "$rc"
