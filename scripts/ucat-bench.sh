#!/usr/bin/env bash
# Bulk-transfer benchmark over loopback with ucat -> ucat (for information).
#
#   scripts/ucat-bench.sh [MEGABYTES] [RUNS]        default: 100 MB, 1 run
#
# Default peers: REAL libutp's dynamic ucat on both sides (built by
# scripts/build-libutp-ref.sh). Other pairs, e.g. for ours-vs-real:
#   UCAT_LISTEN=/path/ucat UCAT_SEND=/path/ucat scripts/ucat-bench.sh 100
# UCAT_ARGS adds options to both ucats (e.g. UCAT_ARGS="-B 65536").
# BENCH_TIMEOUT (seconds, default 300) bounds each run.
#
# ucat's listener never exits by itself, so completion is detected by the
# size of its output; the time is measured from starting the sender until
# the output holds all bytes, then the output is compared with the input and
# all processes are killed. Prints one line per run:
#   bench: <label> <bytes> bytes in <s> s = <MB/s> MB/s (<Mbit/s> Mbit/s), cpu listener <s> sender <s>, exact=yes|no
# Traffic goes only to 127.0.0.1.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MB="${1:-100}"
RUNS="${2:-1}"
BYTES=$(( MB * 1024 * 1024 ))
TIMEOUT_S="${BENCH_TIMEOUT:-300}"
read -r -a XARGS <<<"${UCAT_ARGS:-}"

if [ -n "${UCAT_LISTEN:-}" ] || [ -n "${UCAT_SEND:-}" ]; then
    : "${UCAT_LISTEN:?set UCAT_LISTEN too}" "${UCAT_SEND:?set UCAT_SEND too}"
    LBIN="$UCAT_LISTEN"; SBIN="$UCAT_SEND"; LABEL="${BENCH_LABEL:-custom}"
else
    eval "$("$SCRIPT_DIR/build-libutp-ref.sh" --quiet | grep '^LIBUTP_REF_DIR=')"
    LBIN="$LIBUTP_REF_DIR/bin/ucat"; SBIN="$LIBUTP_REF_DIR/bin/ucat"
    LABEL="${BENCH_LABEL:-libutp->libutp}"
fi

source "$SCRIPT_DIR/lib.sh"
start_work ucat-bench

now_ns() { date +%s%N; }
# user+system CPU seconds of a live process (0 if gone)
cpu_s() {
    local tck; tck=$(getconf CLK_TCK)
    if [ -r "/proc/$1/stat" ]; then
        awk -v t="$tck" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / t }' "/proc/$1/stat"
    else
        echo "?"
    fi
}

head -c "$BYTES" /dev/urandom >"$WORK/in"
fail=0
for run in $(seq 1 "$RUNS"); do
    d="$WORK/run$run"; mkdir -p "$d"
    port=$(pick_port)
    mkfifo "$d/stdin"
    sleep 100000 >"$d/stdin" &
    hpid=$!; PIDS+=("$hpid")
    "$LBIN" "${XARGS[@]}" -l -p "$port" <"$d/stdin" >"$d/out" 2>"$d/listener.err" &
    lpid=$!; PIDS+=("$lpid")
    deadline=$(( $(now_ns) + 5000000000 ))
    until udp_bound "$port"; do
        if ! kill -0 "$lpid" 2>/dev/null || [ "$(now_ns)" -gt "$deadline" ]; then
            echo "bench: listener did not bind port $port" >&2; cat "$d/listener.err" >&2; exit 1
        fi
        sleep 0.02
    done
    t0=$(now_ns)
    "$SBIN" "${XARGS[@]}" 127.0.0.1 "$port" <"$WORK/in" >/dev/null 2>"$d/sender.err" &
    spid=$!; PIDS+=("$spid")
    deadline=$(( t0 + TIMEOUT_S * 1000000000 ))
    t1=""
    while :; do
        size=$(stat -c %s "$d/out")
        if [ "$size" -ge "$BYTES" ]; then t1=$(now_ns); break; fi
        [ "$(now_ns)" -gt "$deadline" ] && break
        sleep 0.02
    done
    lcpu=$(cpu_s "$lpid"); scpu=$(cpu_s "$spid")
    kill -KILL "$spid" "$lpid" "$hpid" 2>/dev/null || true
    { wait "$spid"; wait "$lpid"; wait "$hpid"; } 2>/dev/null || true
    if [ -z "$t1" ]; then
        echo "bench: $LABEL run $run TIMEOUT after ${TIMEOUT_S}s: $(stat -c %s "$d/out") of $BYTES bytes"
        fail=1; continue
    fi
    exact=no; cmp -s "$WORK/in" "$d/out" && exact=yes
    [ "$exact" = yes ] || fail=1
    awk -v b="$BYTES" -v ns="$(( t1 - t0 ))" -v l="$LABEL" -v lc="$lcpu" -v sc="$scpu" -v ex="$exact" 'BEGIN {
        s = ns / 1e9
        printf "bench: %s %d bytes in %.3f s = %.1f MB/s (%.0f Mbit/s), cpu listener %s s sender %s s, exact=%s\n",
               l, b, s, b / s / 1048576, b * 8 / s / 1e6, lc, sc, ex }'
    rm -f "$d/out"
done
exit "$fail"
