#!/usr/bin/env bash
# The cargo-fuzz targets of utp-core/fuzz, each for a bounded time
# (FUZZ_SECONDS, default 60), starting from the committed corpus
# (utp-core/fuzz/corpus/TARGET, copied: the tree is not modified):
#   packet_parser       the wire format parser and emitter
#   endpoint_datagrams  datagram sequences against an endpoint with a live
#                       connection
#   c_api               sequences of libutp C API calls (utp-ffi) with
#                       datagrams, re-entrant callbacks and misuse
# under AddressSanitizer. Any crash, panic or leak fails the script (the
# input that caused it is left in utp-core/fuzz/artifacts/TARGET).
#
# cargo-fuzz is installed from crates.io when missing. Its sanitizer flags
# need a nightly rustc; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
start_work test-fuzz
SECONDS_EACH="${FUZZ_SECONDS:-60}"
say() { echo "test-fuzz: $*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked --quiet
fi
rustc --version | grep -q nightly || export RUSTC_BOOTSTRAP=1

cd utp-core/fuzz
say "building the targets (release, ASan)"
cargo fuzz build -O
for t in packet_parser endpoint_datagrams c_api; do
    corpus="$WORK/corpus-$t"
    mkdir -p "$corpus"
    if [ -d "corpus/$t" ]; then cp -r "corpus/$t/." "$corpus/"; fi
    say "$t: $SECONDS_EACH s from $(ls "$corpus" | wc -l) corpus inputs"
    if ! cargo fuzz run -O "$t" "$corpus" -- -max_total_time="$SECONDS_EACH" \
            -rss_limit_mb=2048 -print_final_stats=1 >"$WORK/$t.log" 2>&1; then
        tail -40 "$WORK/$t.log" >&2
        say "FAIL: $t found a crash (see utp-core/fuzz/artifacts/$t)"
        exit 1
    fi
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^Done " "$WORK/$t.log" | sed "s/^/test-fuzz:   $t /"
done
say "all targets ran clean"
