#!/usr/bin/env bash
# Cross-language interop matrix: every ordered pair of
#   rust    examples/utpcat.rs (the Rust API)
#   c       upstream libutp's unmodified ucat.c, built on our libutp (utp-ffi)
#   utpt    examples/c/utpt_cat.c on our threaded C API (utp_threaded.h)
#   python  examples/python/{receive,send}_file.py on the Python binding
#   node    examples/node/{receive,send}_file.js on the Node binding
#   libutp  real libutp's ucat (the reference build)
# moves MATRIX_BYTES (default 5 MB) of random data from the sender to the
# listener, byte-exact, over 127.0.0.1. A front end that cannot be set up
# (no node, no pip) has its pairs reported as skipped, and the script then
# fails unless MATRIX_ALLOW_SKIP=1.
#
# Then the chaos part: each of our front ends sends CHAOS_BYTES (default
# 200 MB) to itself through bench/src/lossy_relay.rs, which drops 10 % of the
# datagrams each way and duplicates and reorders 2 % each (CHAOS_DROP,
# CHAOS_DUPLICATE, CHAOS_REORDER), byte-exact within CHAOS_TIMEOUT (300 s).
# libutp's ucat.c on our library sends CHAOS_C_BYTES (default 10 MB): it
# runs the caller-driven API's timers only when poll() returns (at most
# every 500 ms), so under loss it moves about 1 MB in 6 s, as on real libutp.
#
# Every pair has a time limit (MATRIX_TIMEOUT, default 60 s); every process
# is killed on exit.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/lib.sh
start_work test-matrix
BYTES="${MATRIX_BYTES:-5000000}"
TIMEOUT_S="${MATRIX_TIMEOUT:-60}"
REL="$ROOT/target/release"
IMPLS=(rust c utpt python node libutp)
CHAOS_IMPLS=(rust c utpt python node)
CHAOS_BYTES="${CHAOS_BYTES:-200000000}"
CHAOS_C_BYTES="${CHAOS_C_BYTES:-10000000}"
CHAOS_TIMEOUT="${CHAOS_TIMEOUT:-300}"
declare -A READY

say() { echo "test-matrix: $*"; }

# ------------------------------------------------------------------ set-up
say "building utpcat, our libutp, and real libutp's ucat"
cargo build --release --quiet --example utpcat --example lossy_relay || { say "ERROR: cargo build failed"; exit 1; }
RELAY="$REL/examples/lossy_relay"
cargo build --release --quiet -p utp-ffi || { say "ERROR: cargo build -p utp-ffi failed"; exit 1; }
eval "$(scripts/build-libutp-ref.sh --quiet | grep '^LIBUTP_REF_DIR=')"
UTPCAT="$REL/examples/utpcat"
REAL_UCAT="$LIBUTP_REF_DIR/bin/ucat"
OUR_UCAT="$WORK/ucat-ours"
[ -x "$UTPCAT" ] && READY[rust]=1
[ -x "$REAL_UCAT" ] && READY[libutp]=1
gcc -Wall -DPOSIX -O2 -I include "$LIBUTP_REF_DIR/src/ucat.c" -L "$REL" -lutp -Wl,-rpath,"$REL" \
    -o "$OUR_UCAT" && READY[c]=1
UTPT_CAT="$WORK/utpt_cat"
gcc -Wall -Wextra -Werror -O2 -I include examples/c/utpt_cat.c -L "$REL" -lutp -Wl,-rpath,"$REL" \
    -o "$UTPT_CAT" && READY[utpt]=1

say "installing the Python binding into a venv (pip install ./bindings-python)"
if python3 -m venv "$WORK/venv" && "$WORK/venv/bin/pip" install --quiet ./bindings-python >"$WORK/pip.log" 2>&1; then
    READY[python]=1
else
    tail -5 "$WORK/pip.log" >&2
fi
PY="$WORK/venv/bin/python"

say "building the Node addon (npm run build)"
if command -v node >/dev/null && (cd bindings-node && node scripts/build.js >/dev/null); then
    # The examples require('utp-socket'): resolve it to this checkout.
    mkdir -p "$WORK/node_modules"
    ln -s "$ROOT/bindings-node" "$WORK/node_modules/utp-socket"
    export NODE_PATH="$WORK/node_modules"
    READY[node]=1
fi

# ------------------------------------------------------------------ one pair
# start_listener IMPL PORT OUT: starts it in the background, sets LPID
start_listener() {
    local impl=$1 port=$2 out=$3 d=$4
    case $impl in
        rust)   "$UTPCAT" -l -p "$port" </dev/null >"$out" 2>"$d/l.err" & ;;
        c|libutp)
            local bin=$OUR_UCAT; [ "$impl" = libutp ] && bin=$REAL_UCAT
            # ucat's listener reads stdin too: keep it open (a FIFO fed by a
            # sleeper) so it does not half-close or quit early.
            mkfifo "$d/stdin"
            sleep 3600 >"$d/stdin" & PIDS+=("$!")
            "$bin" -l -p "$port" <"$d/stdin" >"$out" 2>"$d/l.err" & ;;
        utpt)   "$UTPT_CAT" -l "$port" >"$out" 2>"$d/l.err" & ;;
        python) "$PY" examples/python/receive_file.py 127.0.0.1 "$port" "$out" >/dev/null 2>"$d/l.err" & ;;
        node)   node examples/node/receive_file.js "$port" "$out" >/dev/null 2>"$d/l.err" & ;;
    esac
    LPID=$!
    PIDS+=("$LPID")
}

start_sender() {
    local impl=$1 port=$2 in=$3 d=$4
    case $impl in
        rust)      "$UTPCAT" 127.0.0.1 "$port" <"$in" >/dev/null 2>"$d/s.err" & ;;
        c)         "$OUR_UCAT" ${UCAT_DEBUG:+-d} 127.0.0.1 "$port" <"$in" >/dev/null 2>"$d/s.err" & ;;
        libutp)    "$REAL_UCAT" 127.0.0.1 "$port" <"$in" >/dev/null 2>"$d/s.err" & ;;
        utpt)      "$UTPT_CAT" 127.0.0.1 "$port" <"$in" >/dev/null 2>"$d/s.err" & ;;
        python)    "$PY" examples/python/send_file.py 127.0.0.1 "$port" "$in" >/dev/null 2>"$d/s.err" & ;;
        node)      node examples/node/send_file.js 127.0.0.1 "$port" "$in" >/dev/null 2>"$d/s.err" & ;;
    esac
    SPID=$!
    PIDS+=("$SPID")
}

# start_relay PORT DIR: a lossy relay in front of PORT; sets RELAY_PORT
start_relay() {
    local port=$1 d=$2 deadline
    "$RELAY" "127.0.0.1:$port" --drop "${CHAOS_DROP:-0.10}" --duplicate "${CHAOS_DUPLICATE:-0.02}" \
        --reorder "${CHAOS_REORDER:-0.02}" --seed "$port" >"$d/relay.out" 2>&1 &
    RPID=$!
    PIDS+=("$RPID")
    deadline=$(( $(now_ms) + 10000 ))
    until RELAY_PORT=$(sed -n 's/^relay 127.0.0.1:\([0-9]*\)$/\1/p' "$d/relay.out") && [ -n "$RELAY_PORT" ]; do
        if ! is_running "$RPID" || [ "$(now_ms)" -gt "$deadline" ]; then return 1; fi
        sleep 0.02
    done
}

# where_stuck SPID LPID: for a sender that did not exit, whether the
# listener is still running and where the sender's threads wait (gdb)
where_stuck() {
    local state="gone"
    is_running "$2" && state="still running"
    printf '\n  listener %s; sender threads:' "$state"
    if command -v gdb >/dev/null; then
        timeout 20 gdb -p "$1" -batch -ex 'thread apply all bt 8' 2>/dev/null | awk '
            /^Thread/ { match($0, /"[^"]*"/); printf "\n    %s:", substr($0, RSTART, RLENGTH) }
            /^#[0-9]/ { for (i = 1; i < NF; i++) if ($i == "in") { printf " %s", $(i + 1); break } }' \
            | head -c 3000
    else
        printf ' (no gdb)'
    fi
}

# pair SENDER LISTENER [relay] -> 0 when the listener's output equals the
# input; with `relay`, the sender goes through a lossy relay
pair() {
    local s=$1 l=$2 via=${3:-} d="$WORK/$1-to-$2${3:+-$3}" port t0 deadline size
    local BYTES=$BYTES TIMEOUT_S=$TIMEOUT_S
    [ -n "$via" ] && BYTES=$CHAOS_BYTES TIMEOUT_S=$CHAOS_TIMEOUT
    [ -n "$via" ] && [ "$s" = c ] && BYTES=$CHAOS_C_BYTES
    mkdir -p "$d"
    head -c "$BYTES" /dev/urandom >"$d/in"
    : >"$d/out"
    port=$(pick_port) || return 1
    start_listener "$l" "$port" "$d/out" "$d"
    deadline=$(( $(now_ms) + 10000 ))
    until udp_bound "$port"; do
        if ! is_running "$LPID" || [ "$(now_ms)" -gt "$deadline" ]; then
            RESULT="listener did not bind: $(head -c 300 "$d/l.err")"; return 1
        fi
        sleep 0.02
    done
    local to=$port
    if [ -n "$via" ]; then
        start_relay "$port" "$d" || { RESULT="relay did not start: $(head -c 300 "$d/relay.out")"; return 1; }
        to=$RELAY_PORT
    fi
    t0=$(now_ms)
    # Through the relay, ucat's sender logs (-d) whether the listener's FIN came.
    UCAT_DEBUG=${via:+1} start_sender "$s" "$to" "$d/in" "$d"
    deadline=$(( t0 + TIMEOUT_S * 1000 ))
    while :; do
        size=$(stat -c %s "$d/out")
        if [ "$size" -ge "$BYTES" ] && cmp -s "$d/in" "$d/out"; then break; fi
        if [ "$size" -gt "$BYTES" ] || [ "$(now_ms)" -gt "$deadline" ]; then
            RESULT="got $size of $BYTES bytes$(cmp -s "$d/in" "$d/out" || echo ', content differs')"
            RESULT+="; sender: $(grep -v "^debug: " "$d/s.err" | head -c 200) listener: $(head -c 200 "$d/l.err")"
            return 1
        fi
        sleep 0.01
    done
    RESULT="$(( $(now_ms) - t0 )) ms"
    # A sender that fails after the last byte arrived is a failure too. ucat
    # (ours and real) exits once its peer closes; the ucat listener never
    # exits by itself, so it gets SIGINT, as its README says.
    case $l in c|libutp) sleep 0.2; kill -INT "$LPID" 2>/dev/null ;; esac
    wait_exit "$SPID" 15
    # A sender still running 15 s after its last byte arrived is reported
    # with where it waits; it fails only if it is still there 30 s later
    # (a rare slow exit, not yet explained, was seen about once per CI run).
    if [ "$EXIT_CODE" = timeout ]; then
        local stuck
        stuck="$(where_stuck "$SPID" "$LPID")"
        wait_exit "$SPID" 30
        [ "$EXIT_CODE" != timeout ] && say "slow exit: $s -> $l${via:+ via relay}: the sender took over 15 s to exit:$stuck"
    fi
    # Through the lossy relay, ucat's listener sends its FIN once on SIGINT
    # and exits at once; when the relay drops that FIN (1 time in 10), the
    # ucat sender waits for an end of stream that can no longer come. That
    # is ucat's protocol, not a fault: a sender that never saw the FIN and
    # reported no error is accepted there.
    if [ "$EXIT_CODE" = timeout ] && [ "$s" = c ] && [ -n "$via" ] \
        && ! grep -q -e 'Received EOF' -e 'Error' "$d/s.err"; then
        RESULT+=" (the listener's one FIN was lost; the sender was still waiting for it)"
        EXIT_CODE=0
    fi
    # Real libutp's ucat listener exits the moment it has sent its FIN on
    # SIGINT, so the sender's last packet can meet a closed port: a ucat
    # sender reads that ICMP error as "recv: Connection refused". That is
    # the reference program's exit, not ours (our ucat listener waits).
    if [ "$EXIT_CODE" != 0 ] && [ "$EXIT_CODE" != timeout ] && [ "$l" = libutp ] \
        && [ "$(grep -v '^debug: ' "$d/s.err")" = "recv: Connection refused" ]; then
        RESULT+=" (real libutp's listener exited first; the sender saw ICMP unreachable)"
        EXIT_CODE=0
    fi
    if [ "$EXIT_CODE" != 0 ]; then
        RESULT="byte-exact, but the sender ended with '$EXIT_CODE': $(grep -v '^debug: ' "$d/s.err" | head -c 300)"
        [ "$EXIT_CODE" = timeout ] && RESULT+="$stuck"
        return 1
    fi
    sleep 0.05
    cmp -s "$d/in" "$d/out" || { RESULT="extra bytes after the transfer"; return 1; }
    return 0
}

# ------------------------------------------------------------------ matrix
PASS=0; FAIL=0; SKIP=0
declare -A CELL
for s in "${IMPLS[@]}"; do
    for l in "${IMPLS[@]}"; do
        if [ -z "${READY[$s]:-}" ] || [ -z "${READY[$l]:-}" ]; then
            CELL[$s,$l]=skip; SKIP=$((SKIP + 1))
            say "skipped: $s -> $l (front end not available)"
            continue
        fi
        if pair "$s" "$l"; then
            CELL[$s,$l]=ok; PASS=$((PASS + 1))
            say "ok: $s -> $l, $BYTES bytes byte-exact in $RESULT"
        else
            CELL[$s,$l]=FAIL; FAIL=$((FAIL + 1))
            say "FAIL: $s -> $l: $RESULT"
        fi
        for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
        for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
        PIDS=()
    done
done

# ------------------------------------------------------------------ chaos
CHAOS_PASS=0; CHAOS_FAIL=0
for f in "${CHAOS_IMPLS[@]}"; do
    if [ -z "${READY[$f]:-}" ]; then
        SKIP=$((SKIP + 1)); say "skipped: chaos $f (front end not available)"; continue
    fi
    if pair "$f" "$f" relay; then
        CHAOS_PASS=$((CHAOS_PASS + 1))
        say "ok: chaos $f -> $f through the lossy relay, $(stat -c %s "$WORK/$f-to-$f-relay/in") bytes byte-exact in $RESULT"
    else
        CHAOS_FAIL=$((CHAOS_FAIL + 1))
        say "FAIL: chaos $f -> $f: $RESULT"
    fi
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    PIDS=()
    sed -n 's/^/test-matrix:   relay /p' "$WORK/$f-to-$f-relay/relay.out" | grep -v 'relay relay' || true
    rm -f "$WORK/$f-to-$f-relay/in" "$WORK/$f-to-$f-relay/out"
done

printf '\nsender \\ listener'; printf ' %7s' "${IMPLS[@]}"; echo
for s in "${IMPLS[@]}"; do
    printf '%-17s' "$s"
    for l in "${IMPLS[@]}"; do printf ' %7s' "${CELL[$s,$l]}"; done
    echo
done
say "$PASS passed, $FAIL failed, $SKIP skipped ($BYTES bytes per pair)"
say "chaos: $CHAOS_PASS passed, $CHAOS_FAIL failed ($CHAOS_BYTES bytes each through the lossy relay, $CHAOS_C_BYTES for ucat.c)"
[ "$FAIL" = 0 ] && [ "$CHAOS_FAIL" = 0 ] || exit 1
if [ "$SKIP" != 0 ] && [ "${MATRIX_ALLOW_SKIP:-0}" != 1 ]; then
    say "FAIL: pairs were skipped (MATRIX_ALLOW_SKIP=1 accepts that)"; exit 1
fi
exit 0
