#!/usr/bin/env bash
# Regenerate the generated headers with the pinned cbindgen into a temp dir
# and fail if a checked-in one differs:
#   include/utp.h           from the utp-ffi crate (utp-ffi/cbindgen.toml);
#   include/utp_threaded.h  from utp-ffi/src/threaded.rs alone
#                           (utp-ffi/cbindgen-threaded.toml; lib.rs hides that
#                           module from the utp.h run with `cbindgen:ignore`).
# include/utp_types.h is hand-written (it is preprocessor logic cbindgen cannot
# produce) and is only compile-checked.
#
# Usage: scripts/check-headers.sh [--fix]
#   --fix   write the regenerated headers to include/ instead of failing
# Environment: CBINDGEN (default: cbindgen on PATH). If it is missing or not
# the pinned version, the script installs it with
#   cargo install cbindgen --version =$CBINDGEN_VERSION --locked
# unless CHECK_HEADERS_NO_INSTALL=1 (then it exits 77 = skipped).
set -euo pipefail

CBINDGEN_VERSION=0.29.2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CBINDGEN="${CBINDGEN:-cbindgen}"
FIX=0
[ "${1:-}" = "--fix" ] && FIX=1

have_pinned() {
    command -v "$CBINDGEN" >/dev/null 2>&1 &&
        [ "$("$CBINDGEN" --version 2>/dev/null | awk '{print $2}')" = "$CBINDGEN_VERSION" ]
}
if ! have_pinned; then
    if [ "${CHECK_HEADERS_NO_INSTALL:-0}" = 1 ]; then
        echo "check-headers: cbindgen $CBINDGEN_VERSION not found (skipped)" >&2
        exit 77
    fi
    echo "check-headers: installing cbindgen $CBINDGEN_VERSION" >&2
    cargo install cbindgen --version "=$CBINDGEN_VERSION" --locked --quiet >&2
    CBINDGEN="${CARGO_HOME:-$HOME/.cargo}/bin/cbindgen"
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/check-headers.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
# cbindgen warns about the types deliberately excluded from export
# (they are defined verbatim in after_includes or in utp_types.h).
(cd "$ROOT" && "$CBINDGEN" --config utp-ffi/cbindgen.toml --crate utp-ffi \
    --output "$TMP/utp.h" 2>"$TMP/cbindgen.log") || { cat "$TMP/cbindgen.log" >&2; exit 1; }
# Single-file mode: warns about the types it does not see (system types, the
# opaque handles written verbatim in the config) and the `notify` submodule.
(cd "$ROOT" && "$CBINDGEN" --config utp-ffi/cbindgen-threaded.toml \
    --output "$TMP/utp_threaded.h" utp-ffi/src/threaded.rs 2>"$TMP/cbindgen-threaded.log") ||
    { cat "$TMP/cbindgen-threaded.log" >&2; exit 1; }

stale=0
for h in utp.h utp_threaded.h; do
    if [ "$FIX" = 1 ]; then
        cp "$TMP/$h" "$ROOT/include/$h"
        echo "check-headers: wrote include/$h"
    elif ! diff -u "$ROOT/include/$h" "$TMP/$h"; then
        echo "check-headers: include/$h is stale; run scripts/check-headers.sh --fix" >&2
        stale=1
    fi
done
[ "$stale" = 0 ] || exit 1
# The libutp API must not leak the threaded one (and vice versa).
if grep -q 'utpt_' "$ROOT/include/utp.h"; then
    echo "check-headers: include/utp.h declares utpt_* functions" >&2; exit 1
fi
if grep -Eq '\butp_[a-z]+\(' "$ROOT/include/utp_threaded.h"; then
    echo "check-headers: include/utp_threaded.h declares utp_* functions" >&2; exit 1
fi

# The headers must compile as C and C++ without warnings, alone and together.
for cc in "gcc -x c -std=c11" "gcc -x c -std=gnu99" "g++ -x c++ -std=c++11"; do
    for inc in '#include "utp.h"' '#include "utp_threaded.h"' \
               '#include "utp_threaded.h"\n#include "utp.h"'; do
        printf "$inc\n" | $cc -Wall -Wextra -Werror -DPOSIX -I "$ROOT/include" -fsyntax-only - ||
            { echo "check-headers: '$inc' does not compile with: $cc" >&2; exit 1; }
    done
done
echo "check-headers: include/utp.h and include/utp_threaded.h match cbindgen $CBINDGEN_VERSION; headers compile as C and C++"
