# Shared helpers of the ucat/utpcat scripts (sourced, not run).
#
#   start_work NAME   creates $WORK (a temp dir) and $PIDS; on exit every PID
#                     in PIDS is killed and reaped and $WORK removed
#   now_ms            wall clock in milliseconds
#   udp_bound PORT    is UDP PORT bound on this host? (reads /proc, no ss)
#   pick_port         a UDP port in 20000..59999 nobody has bound right now
#   is_running PID    alive and not a zombie
#   wait_exit PID S   waits up to S seconds; sets EXIT_CODE (a number, or
#                     "timeout" if the process is still running)

start_work() {
    PIDS=()
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
    trap _lib_cleanup EXIT
    trap 'exit 130' INT TERM
}
_lib_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

udp_bound() {
    local hex; hex=$(printf '%04X' "$1")
    cat /proc/net/udp /proc/net/udp6 2>/dev/null |
        awk 'NR > 1 { n = split($2, a, ":"); print toupper(a[n]) }' | grep -qx "$hex"
}

pick_port() {
    local p i
    for i in $(seq 1 50); do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        udp_bound "$p" || { echo "$p"; return 0; }
    done
    echo "no free UDP port found" >&2; return 1
}

is_running() {
    kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]
}

wait_exit() {
    local pid=$1 deadline=$(( $(now_ms) + $2 * 1000 ))
    while is_running "$pid" && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.02; done
    if is_running "$pid"; then
        EXIT_CODE=timeout
    else
        EXIT_CODE=0
        wait "$pid" || EXIT_CODE=$?
    fi
}
