#!/usr/bin/env bash
# The C library as a C user installs and uses it:
#   1. scripts/install-c.sh into a temporary prefix: versioned libutp.so.0.X.Y
#      with its symlinks, libutp.a, headers, libutp.pc with absolute paths;
#   2. the examples (examples/c) built with pkg-config alone, shared and
#      fully static, run with no extra environment (env -i), echo round trips
#      over 127.0.0.1; the shared ones need libutp.so.0, the static ones no
#      libutp at all;
#   3. `make -C examples/c PKGCONFIG=1` against the install;
#   4. a DESTDIR-staged install names the final prefix in its .pc.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/test-c-install.XXXXXX")"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
fail() { echo "test-c-install: FAIL: $*" >&2; exit 1; }
ok() { echo "test-c-install: ok: $*"; }

PREFIX="$WORK/prefix"
bash scripts/install-c.sh --prefix "$PREFIX" >/dev/null
V="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
[ -f "$PREFIX/lib/libutp.so.$V" ] && [ "$(readlink "$PREFIX/lib/libutp.so.0")" = "libutp.so.$V" ] &&
    [ "$(readlink "$PREFIX/lib/libutp.so")" = "libutp.so.0" ] && [ -f "$PREFIX/lib/libutp.a" ] &&
    [ -f "$PREFIX/include/utp.h" ] && [ -f "$PREFIX/include/libutp/utp_threaded.h" ] ||
    fail "installed files"
grep -q "^prefix=$PREFIX\$" "$PREFIX/lib/pkgconfig/libutp.pc" || fail "absolute prefix in libutp.pc"
grep -q "^Libs.private: " "$PREFIX/lib/pkgconfig/libutp.pc" || fail "Libs.private in libutp.pc"
ok "install: libutp.so.$V + symlinks, libutp.a, headers, libutp.pc"

export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
CFLAGS="$(pkg-config --cflags libutp)"
for prog in utp_echo utpt_echo; do
    # shellcheck disable=SC2086
    cc -O2 -Wall -Werror $CFLAGS -o "$WORK/$prog" "examples/c/$prog.c" $(pkg-config --libs libutp)
    # shellcheck disable=SC2086
    cc -static -O2 -Wall -Werror $CFLAGS -o "$WORK/$prog-static" "examples/c/$prog.c" \
        $(pkg-config --static --libs libutp) 2>"$WORK/static-link.log" ||
        { cat "$WORK/static-link.log" >&2; fail "static link of $prog"; }
    readelf -d "$WORK/$prog" | grep -q 'NEEDED.*\[libutp.so.0\]' || fail "$prog does not need libutp.so.0"
    ! readelf -d "$WORK/$prog-static" 2>/dev/null | grep -q 'NEEDED' || fail "$prog-static is not static"
done
ok "examples built with pkg-config: shared (NEEDED libutp.so.0) and static (no NEEDED)"

# Runs server+client with an empty environment; prints what the client echoed.
round_trip() { # binary
    local bin="$1" port=$((20000 + RANDOM % 20000)) out
    env -i PATH=/usr/bin:/bin "$bin" -l "$port" >/dev/null 2>&1 &
    local srv=$!
    PIDS+=("$srv")
    sleep 0.3
    out="$(env -i PATH=/usr/bin:/bin timeout 10 "$bin" 127.0.0.1 "$port" "round trip via $(basename "$bin")")" || true
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
    [ "$out" = "round trip via $(basename "$bin")" ] || fail "$(basename "$bin") echoed '$out'"
}
for b in utp_echo utpt_echo utp_echo-static utpt_echo-static; do
    round_trip "$WORK/$b"
done
ok "all four ran with no extra environment and echoed over 127.0.0.1"

make -s -C examples/c clean
make -s -C examples/c PKGCONFIG=1 >/dev/null
readelf -d examples/c/utpt_echo | grep -q "RUNPATH.*$PREFIX/lib\|RPATH.*$PREFIX/lib" || fail "make PKGCONFIG=1 did not use the install"
make -s -C examples/c clean
ok "make -C examples/c PKGCONFIG=1 builds against the install"

bash scripts/install-c.sh --prefix /opt/libutp --destdir "$WORK/stage" --no-build >/dev/null
[ -f "$WORK/stage/opt/libutp/lib/libutp.so.$V" ] && grep -q '^prefix=/opt/libutp$' "$WORK/stage/opt/libutp/lib/pkgconfig/libutp.pc" ||
    fail "DESTDIR staging"
ok "DESTDIR staging keeps the final prefix in libutp.pc"
echo "test-c-install: all passed"
