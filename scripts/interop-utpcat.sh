#!/usr/bin/env bash
# utpcat (examples/utpcat.rs, our threaded runtime) against REAL libutp's
# ucat (scripts/build-libutp-ref.sh) and against itself, over 127.0.0.1.
#
#   scripts/interop-utpcat.sh [--no-bench] [--mixed] [--bench-mb N] [--runs N] [--mb N]
#
# Checks (5 MB random file unless --mb):
#   1. utpcat -> ucat -l      byte-exact; after ucat closes (SIGINT, since
#                             ucat never sees EOF on a pipe), utpcat gets the
#                             FIN and exits 0 by itself
#   2. ucat -> utpcat -l      both directions at once (utpcat -l sends its own
#                             1 MB stdin back), byte-exact; utpcat and ucat
#                             both exit 0 by themselves
#   3. utpcat -> utpcat -l    both directions, byte-exact, both exit 0 by
#                             themselves
#   4. utpcat 127.0.0.1 <closed port> exits non-zero within 2 s with
#      "utpcat: connection refused"
# Benchmark (skipped with --no-bench): 100 MB (--bench-mb) utpcat->utpcat
# and ucat->ucat, alternating, 3 runs each (--runs); prints the time until
# the receiver has written every byte, throughput, and CPU seconds of both
# processes (/usr/bin/time, installed with apt-get if missing). --mixed also
# times utpcat->ucat and ucat->utpcat.
#
# Environment: UTPCAT=<binary> uses that utpcat instead of building it with
# `cargo build --release --example utpcat`; CARGO_TARGET_DIR is honoured.
# TIMEOUT (seconds, default 60) bounds every check's transfer, BENCH_TIMEOUT
# (default 300) every benchmark transfer.
# Traffic goes only to 127.0.0.1; every process started here is killed on exit.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
BENCH=1
MIXED=0
BENCH_MB=100
RUNS=3
MB=5
TIMEOUT_S="${TIMEOUT:-60}"
BENCH_TIMEOUT_S="${BENCH_TIMEOUT:-300}"
while [ $# -gt 0 ]; do
    case "$1" in
        --no-bench) BENCH=0 ;;
        --mixed) MIXED=1 ;;
        --bench-mb) BENCH_MB="$2"; shift ;;
        --runs) RUNS="$2"; shift ;;
        --mb) MB="$2"; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "interop-utpcat: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

source "$SCRIPT_DIR/lib.sh"
start_work interop-utpcat

log() { echo "interop-utpcat: $*"; }
wait_bound() {  # PORT PID
    local deadline=$(( $(now_ms) + 5000 ))
    until udp_bound "$1"; do
        kill -0 "$2" 2>/dev/null || { log "listener died before binding port $1"; return 1; }
        [ "$(now_ms)" -lt "$deadline" ] || { log "port $1 not bound after 5 s"; return 1; }
        sleep 0.01
    done
}
# wait_size FILE BYTES SECONDS -> 0 when FILE holds BYTES bytes; sets DONE_MS
wait_size() {
    local deadline=$(( $(now_ms) + $3 * 1000 ))
    while [ "$(stat -c %s "$1")" -lt "$2" ]; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.005
    done
    DONE_MS=$(now_ms)
}
show_err() {  # FILE...
    local f
    for f in "$@"; do [ -s "$f" ] && sed "s|^|    $(basename "$f"): |" "$f" | head -8; done
    return 0
}

# ---------------------------------------------------------------- binaries
if [ -n "${UTPCAT:-}" ]; then
    [ -x "$UTPCAT" ] || { log "UTPCAT=$UTPCAT is not executable"; exit 1; }
else
    log "building utpcat (cargo build --release --example utpcat)"
    (cd "$REPO_ROOT" && cargo build --quiet --release --example utpcat)
    UTPCAT="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/examples/utpcat"
    case "$UTPCAT" in /*) ;; *) UTPCAT="$REPO_ROOT/$UTPCAT" ;; esac
fi
eval "$("$SCRIPT_DIR/build-libutp-ref.sh" --quiet | grep '^LIBUTP_REF_DIR=')"
UCAT="$LIBUTP_REF_DIR/bin/ucat"
[ -x "$UCAT" ] || { log "ucat missing: $UCAT"; exit 1; }
log "utpcat: $UTPCAT"
log "ucat:   $UCAT"

BYTES=$(( MB * 1024 * 1024 ))
head -c "$BYTES" /dev/urandom >"$WORK/in"
head -c $(( 1024 * 1024 )) /dev/urandom >"$WORK/back"
fail=0
pass() { log "PASS $*"; }
failed() { log "FAIL $*"; fail=1; }

# A listener stdin that stays open and never gives EOF: a FIFO fed by a
# long sleep (both PIDs known, so both can be killed).
held_stdin() {  # DIR -> creates DIR/hold; sets HOLD_PID (also in PIDS)
    mkfifo "$1/hold"
    sleep 100000 >"$1/hold" &
    PIDS+=("$!")
    HOLD_PID=$!
}

# ---------------------------------------------------------------- 1
t_utpcat_to_ucat() {
    local d="$WORK/1" port lpid spid t0
    mkdir -p "$d"; port=$(pick_port)
    held_stdin "$d"
    "$UCAT" -l -p "$port" <"$d/hold" >"$d/out" 2>"$d/ucat.err" &
    lpid=$!; PIDS+=("$lpid")
    wait_bound "$port" "$lpid" || { failed "utpcat->ucat: ucat did not start"; return; }
    t0=$(now_ms)
    "$UTPCAT" 127.0.0.1 "$port" <"$WORK/in" >"$d/sout" 2>"$d/utpcat.err" &
    spid=$!; PIDS+=("$spid")
    if ! wait_size "$d/out" "$BYTES" "$TIMEOUT_S"; then
        failed "utpcat->ucat: ucat has $(stat -c %s "$d/out") of $BYTES bytes after ${TIMEOUT_S}s"
        show_err "$d/utpcat.err" "$d/ucat.err"; return
    fi
    local ms=$(( DONE_MS - t0 ))
    sleep 0.1
    if cmp -s "$WORK/in" "$d/out"; then
        pass "utpcat->ucat: $BYTES bytes byte-exact in $ms ms"
    else
        failed "utpcat->ucat: output differs"
    fi
    # ucat never sees EOF on its stdin, so it never closes by itself; utpcat
    # must still be waiting for the FIN. SIGINT makes ucat close (FIN).
    if ! is_running "$spid"; then
        wait_exit "$spid" 1
        failed "utpcat->ucat: utpcat exited ($EXIT_CODE) before ucat closed"; show_err "$d/utpcat.err"; return
    fi
    kill -INT "$lpid"
    wait_exit "$spid" 10; local src=$EXIT_CODE
    wait_exit "$lpid" 5; local lrc=$EXIT_CODE
    kill "$HOLD_PID" 2>/dev/null || true
    if [ "$src" = 0 ]; then
        pass "utpcat->ucat: after ucat's close (SIGINT) utpcat exited 0 by itself (ucat exit $lrc; upstream exits 1 after SIGINT)"
    else
        failed "utpcat->ucat: utpcat exit $src after ucat's close (want 0)"; show_err "$d/utpcat.err" "$d/ucat.err"
    fi
}

# ---------------------------------------------------------------- 2
t_ucat_to_utpcat() {
    local d="$WORK/2" port lpid spid t0
    mkdir -p "$d"; port=$(pick_port)
    "$UTPCAT" -l -p "$port" <"$WORK/back" >"$d/out" 2>"$d/utpcat.err" &
    lpid=$!; PIDS+=("$lpid")
    wait_bound "$port" "$lpid" || { failed "ucat->utpcat: utpcat -l did not start"; show_err "$d/utpcat.err"; return; }
    t0=$(now_ms)
    "$UCAT" 127.0.0.1 "$port" <"$WORK/in" >"$d/sout" 2>"$d/ucat.err" &
    spid=$!; PIDS+=("$spid")
    wait_exit "$lpid" "$TIMEOUT_S"; local lrc=$EXIT_CODE
    local ms=$(( $(now_ms) - t0 ))
    wait_exit "$spid" 10; local src=$EXIT_CODE
    local ok=1
    cmp -s "$WORK/in" "$d/out" || { failed "ucat->utpcat: utpcat -l output differs ($(stat -c %s "$d/out") of $BYTES bytes)"; ok=0; }
    cmp -s "$WORK/back" "$d/sout" || { failed "ucat->utpcat: ucat's output (utpcat -l's stdin) differs ($(stat -c %s "$d/sout") bytes)"; ok=0; }
    if [ "$lrc" != 0 ]; then failed "ucat->utpcat: utpcat -l exit $lrc (want 0 by itself)"; ok=0; fi
    if [ "$src" != 0 ]; then failed "ucat->utpcat: ucat exit $src (want 0 by itself)"; ok=0; fi
    if [ "$ok" = 1 ]; then
        pass "ucat->utpcat: $BYTES bytes + 1 MiB back byte-exact; utpcat -l exited 0 after $ms ms, ucat exited 0, both by themselves"
    else
        show_err "$d/utpcat.err" "$d/ucat.err"
    fi
}

# ---------------------------------------------------------------- 3
t_utpcat_to_utpcat() {
    local d="$WORK/3" port lpid spid t0
    mkdir -p "$d"; port=$(pick_port)
    "$UTPCAT" -l -p "$port" <"$WORK/back" >"$d/out" 2>"$d/l.err" &
    lpid=$!; PIDS+=("$lpid")
    wait_bound "$port" "$lpid" || { failed "utpcat->utpcat: listener did not start"; show_err "$d/l.err"; return; }
    t0=$(now_ms)
    "$UTPCAT" 127.0.0.1 "$port" <"$WORK/in" >"$d/sout" 2>"$d/s.err" &
    spid=$!; PIDS+=("$spid")
    wait_exit "$spid" "$TIMEOUT_S"; local src=$EXIT_CODE
    wait_exit "$lpid" 10; local lrc=$EXIT_CODE
    local ms=$(( $(now_ms) - t0 ))
    local ok=1
    cmp -s "$WORK/in" "$d/out" || { failed "utpcat->utpcat: listener output differs"; ok=0; }
    cmp -s "$WORK/back" "$d/sout" || { failed "utpcat->utpcat: sender output differs"; ok=0; }
    [ "$src" = 0 ] || { failed "utpcat->utpcat: sender exit $src (want 0)"; ok=0; }
    [ "$lrc" = 0 ] || { failed "utpcat->utpcat: listener exit $lrc (want 0)"; ok=0; }
    if [ "$ok" = 1 ]; then
        pass "utpcat->utpcat: $BYTES bytes + 1 MiB back byte-exact, both exited 0 by themselves after $ms ms"
    else
        show_err "$d/l.err" "$d/s.err"
    fi
}

# ---------------------------------------------------------------- 4
t_refused() {
    local d="$WORK/4" port t0 rc=0
    mkdir -p "$d"; port=$(pick_port)
    t0=$(now_ms)
    timeout 10 "$UTPCAT" 127.0.0.1 "$port" <"$WORK/in" >/dev/null 2>"$d/err" || rc=$?
    local ms=$(( $(now_ms) - t0 ))
    if [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$ms" -lt 2000 ] && grep -q '^utpcat: connection refused$' "$d/err"; then
        pass "refused: exit $rc after $ms ms: $(head -n1 "$d/err")"
    else
        failed "refused: exit $rc after $ms ms, stderr: $(head -c 300 "$d/err")"
    fi
}

t_utpcat_to_ucat
t_ucat_to_utpcat
t_utpcat_to_utpcat
t_refused

# ---------------------------------------------------------------- bench
TIME_BIN=/usr/bin/time
ensure_time() {
    [ -x "$TIME_BIN" ] && return 0
    log "installing GNU time with apt-get"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq time >&2
    [ -x "$TIME_BIN" ]
}

# bench_run LABEL LISTEN_BIN SEND_BIN -> prints one line, appends to $WORK/bench.txt
bench_run() {
    local label=$1 lbin=$2 sbin=$3 port lpid spid t0 lchild
    local d="$WORK/bench-$label-$4"
    mkdir -p "$d"; port=$(pick_port)
    local lin="$d/hold"
    if [ "$lbin" = "$UTPCAT" ]; then
        lin=/dev/null
    else
        held_stdin "$d"
    fi
    "$TIME_BIN" -f "%e %U %S" -o "$d/ltime" "$lbin" -l -p "$port" <"$lin" >"$d/out" 2>"$d/l.err" &
    lpid=$!; PIDS+=("$lpid")
    wait_bound "$port" "$lpid" || { failed "bench $label: listener did not start"; return; }
    t0=$(now_ms)
    "$TIME_BIN" -f "%e %U %S" -o "$d/stime" "$sbin" 127.0.0.1 "$port" <"$WORK/big" >/dev/null 2>"$d/s.err" &
    spid=$!; PIDS+=("$spid")
    if ! wait_size "$d/out" "$BIG" "$BENCH_TIMEOUT_S"; then
        failed "bench $label run $4: $(stat -c %s "$d/out") of $BIG bytes after ${BENCH_TIMEOUT_S}s"
        show_err "$d/l.err" "$d/s.err"; return
    fi
    local ms=$(( DONE_MS - t0 )) exact=yes
    if [ "$lbin" = "$UCAT" ]; then
        # ucat's listener never exits by itself: SIGINT the ucat under time(1)
        lchild=$(ps -o pid= --ppid "$lpid" | tr -d ' ')
        sleep 0.1
        [ -n "$lchild" ] && kill -INT "$lchild" 2>/dev/null || true
        kill "$HOLD_PID" 2>/dev/null || true
    fi
    wait_exit "$lpid" 20; local lrc=$EXIT_CODE
    wait_exit "$spid" 20; local src=$EXIT_CODE
    local exit_ms=$(( $(now_ms) - t0 ))
    cmp -s "$WORK/big" "$d/out" || { exact=no; failed "bench $label run $4: output differs"; }
    local lcpu scpu
    lcpu=$(awk 'END { printf "%.2f", $2 + $3 }' "$d/ltime" 2>/dev/null || echo "?")
    scpu=$(awk 'END { printf "%.2f", $2 + $3 }' "$d/stime" 2>/dev/null || echo "?")
    local line
    line=$(awk -v b="$BIG" -v ms="$ms" -v l="$label" -v r="$4" -v lc="$lcpu" -v sc="$scpu" \
               -v em="$exit_ms" -v x="$exact" -v lr="$lrc" -v sr="$src" 'BEGIN {
        s = ms / 1000; printf "bench: %-10s run %s: %d MiB in %6.2f s = %6.1f MB/s (%6.0f Mbit/s), cpu listener %s s sender %s s, both exited %.2f s after start (exit %s/%s), exact=%s",
            l, r, b / 1048576, s, b / s / 1e6, b * 8 / s / 1e6, lc, sc, em / 1000, lr, sr, x }')
    echo "$line"
    echo "$label $ms $lcpu $scpu" >>"$WORK/bench.txt"
}

if [ "$BENCH" = 1 ]; then
    ensure_time || { failed "GNU time (/usr/bin/time) not available"; BENCH=0; }
fi
if [ "$BENCH" = 1 ]; then
    BIG=$(( BENCH_MB * 1024 * 1024 ))
    head -c "$BIG" /dev/urandom >"$WORK/big"
    log "benchmark: $BENCH_MB MiB over loopback, $RUNS runs each, alternating (time = until the receiver wrote the last byte)"
    for run in $(seq 1 "$RUNS"); do
        bench_run utpcat "$UTPCAT" "$UTPCAT" "$run"
        bench_run ucat "$UCAT" "$UCAT" "$run"
        if [ "$MIXED" = 1 ]; then
            bench_run ours-\>ucat "$UCAT" "$UTPCAT" "$run"
            bench_run ucat-\>ours "$UTPCAT" "$UCAT" "$run"
        fi
    done
    if [ -s "$WORK/bench.txt" ]; then
        awk -v b="$BIG" '{ n[$1]++; t[$1] += $2 / 1000; c[$1] += $3 + $4 }
            END { for (k in n) printf "bench summary: %-10s mean %.2f s = %.1f MB/s, mean cpu (both processes) %.2f s over %d runs\n",
                                     k, t[k] / n[k], b * n[k] / t[k] / 1e6, c[k] / n[k], n[k] }' "$WORK/bench.txt"
    fi
fi

if [ "$fail" = 0 ]; then log "ALL PASS"; else log "SOME CHECKS FAILED"; fi
exit "$fail"
