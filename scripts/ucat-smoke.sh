#!/usr/bin/env bash
# Loopback smoke test of ucat, reproducing libutp-api-contract.md §15.4
# "Transfer":  listener `sleep 30 | ucat -l -p P > out`, sender
# `ucat 127.0.0.1 P < in` with 300 KB of random data. Passes when `out`
# equals `in` byte for byte within a bounded time.
#
# By default it tests REAL libutp (scripts/build-libutp-ref.sh is run first):
# the dynamic `ucat` and the `ucat-static` build. Any other ucat pair can be
# tested by setting both variables (e.g. ucat.c built against our library):
#   UCAT_LISTEN=/path/to/ucat UCAT_SEND=/path/to/ucat scripts/ucat-smoke.sh
#
# Options/environment:
#   SMOKE_BYTES   size of the payload (default 307200 = 300 KB)
#   SMOKE_TIMEOUT seconds to wait for the transfer (default 10)
#   SMOKE_STRICT_EXIT=1  also fail if the exit codes differ from §15.4
#                        (listener 1 after SIGINT, sender 0)
# Traffic goes only to 127.0.0.1; every process started here is killed on exit.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BYTES="${SMOKE_BYTES:-307200}"
TIMEOUT_S="${SMOKE_TIMEOUT:-10}"
STRICT_EXIT="${SMOKE_STRICT_EXIT:-0}"

source "$SCRIPT_DIR/lib.sh"
start_work ucat-smoke

# transfer NAME LISTEN_BIN SEND_BIN -> 0 if byte-exact
transfer() {
    local name=$1 lbin=$2 sbin=$3 d="$WORK/$1" port lpid spid hpid t0 t1 size ok=1
    mkdir -p "$d"
    head -c "$BYTES" /dev/urandom >"$d/in"
    port=$(pick_port)
    # Listener's stdin must stay open (a file or /dev/null makes it quit,
    # a closed pipe makes it busy-loop): feed it from a long sleep via a FIFO
    # so that both PIDs are known and can be killed.
    mkfifo "$d/stdin"
    sleep 3600 >"$d/stdin" &
    hpid=$!; PIDS+=("$hpid")
    "$lbin" -l -p "$port" <"$d/stdin" >"$d/out" 2>"$d/listener.err" &
    lpid=$!; PIDS+=("$lpid")
    # wait until the listener has bound the port (else the sender would get
    # ICMP port unreachable -> UTP_ECONNREFUSED at once)
    local deadline=$(( $(now_ms) + 5000 ))
    until udp_bound "$port"; do
        if ! kill -0 "$lpid" 2>/dev/null || [ "$(now_ms)" -gt "$deadline" ]; then
            echo "[$name] FAIL: listener did not bind UDP port $port"; cat "$d/listener.err"; return 1
        fi
        sleep 0.02
    done
    t0=$(now_ms)
    "$sbin" 127.0.0.1 "$port" <"$d/in" >"$d/sender.out" 2>"$d/sender.err" &
    spid=$!; PIDS+=("$spid")
    deadline=$(( t0 + TIMEOUT_S * 1000 ))
    while :; do
        size=$(stat -c %s "$d/out")
        if [ "$size" -ge "$BYTES" ] && cmp -s "$d/in" "$d/out"; then t1=$(now_ms); break; fi
        if [ "$(now_ms)" -gt "$deadline" ]; then t1=""; break; fi
        sleep 0.01
    done
    if [ -z "$t1" ]; then
        echo "[$name] FAIL: out has $(stat -c %s "$d/out") of $BYTES bytes after ${TIMEOUT_S}s"
        ok=0
    else
        # give a late extra byte a chance to show up, then compare again
        sleep 0.1
        if cmp -s "$d/in" "$d/out"; then
            echo "[$name] transfer OK: $BYTES bytes byte-exact in $(( t1 - t0 )) ms (port $port)"
        else
            echo "[$name] FAIL: out differs from in ($(stat -c %s "$d/out") bytes)"; ok=0
        fi
    fi
    # §15.4: SIGINT to the listener -> listener exits 1; the sender gets the
    # FIN, closes and exits 0.
    kill -INT "$lpid" 2>/dev/null || true
    wait_exit "$lpid" 5; local lrc=$EXIT_CODE
    wait_exit "$spid" 5; local src=$EXIT_CODE
    kill -KILL "$hpid" "$lpid" "$spid" 2>/dev/null || true
    { wait "$hpid"; } 2>/dev/null || true
    local expect="listener exit $lrc (expect 1), sender exit $src (expect 0)"
    if [ "$lrc" = 1 ] && [ "$src" = 0 ]; then
        echo "[$name] after SIGINT to listener: $expect - as in contract §15.4"
    else
        echo "[$name] after SIGINT to listener: $expect - differs from contract §15.4 (informational)"
        grep -q '^recv: Connection refused' "$d/sender.err" 2>/dev/null &&
            echo "    (known race in upstream ucat: its ACK of the listener's FIN reaches the already closed port, the ICMP error surfaces in recvfrom() and ucat dies with pdie(\"recv\"))"
        [ -s "$d/listener.err" ] && sed 's/^/    listener stderr: /' "$d/listener.err" | head -5
        [ -s "$d/sender.err" ] && sed 's/^/    sender stderr: /' "$d/sender.err" | head -5
        [ "$STRICT_EXIT" = 1 ] && ok=0
    fi
    [ "$ok" = 1 ]
}

fail=0
if [ -n "${UCAT_LISTEN:-}" ] || [ -n "${UCAT_SEND:-}" ]; then
    : "${UCAT_LISTEN:?set UCAT_LISTEN too}" "${UCAT_SEND:?set UCAT_SEND too}"
    transfer custom "$UCAT_LISTEN" "$UCAT_SEND" || fail=1
else
    eval "$("$SCRIPT_DIR/build-libutp-ref.sh" --quiet | grep '^LIBUTP_REF_DIR=')"
    REF="$LIBUTP_REF_DIR"
    transfer ucat "$REF/bin/ucat" "$REF/bin/ucat" || fail=1
    transfer ucat-static "$REF/bin/ucat-static" "$REF/bin/ucat-static" || fail=1
fi

if [ "$fail" = 0 ]; then echo "ucat-smoke: PASS"; else echo "ucat-smoke: FAIL"; fi
exit "$fail"
