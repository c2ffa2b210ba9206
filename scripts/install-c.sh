#!/usr/bin/env bash
# Builds and installs the C library (crate utp-ffi) the way C users expect:
#
#   PREFIX/lib/libutp.so.0.X.Y        the shared library (SONAME libutp.so.0)
#   PREFIX/lib/libutp.so.0, libutp.so symlinks
#   PREFIX/lib/libutp.a               the static library
#   PREFIX/include/utp.h utp_types.h utp_threaded.h (and PREFIX/include/libutp/)
#   PREFIX/lib/pkgconfig/libutp.pc    absolute paths; Libs.private lists what
#                                     a static link needs (pkg-config --static)
#
# Usage: scripts/install-c.sh [--prefix DIR] [--destdir DIR] [--no-build]
#   --prefix   where the library will live (default /usr/local)
#   --destdir  stage the files under DESTDIR/PREFIX (for packaging); the .pc
#              still names PREFIX
#   --no-build use the existing target/release build
#
# Outside the linker's default directories the .pc adds an rpath to libdir,
# so programs built with `pkg-config --libs libutp` run with no extra
# environment. As root with the default prefix it runs ldconfig.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/usr/local
DESTDIR=""
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="$2"; shift 2 ;;
        --prefix=*) PREFIX="${1#*=}"; shift ;;
        --destdir) DESTDIR="$2"; shift 2 ;;
        --destdir=*) DESTDIR="${1#*=}"; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "install-c: unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$PREFIX" in
    /*) ;;
    *) PREFIX="$(cd "$(dirname "$PREFIX")" 2>/dev/null && pwd)/$(basename "$PREFIX")" ||
           { echo "install-c: prefix parent does not exist: $PREFIX" >&2; exit 2; } ;;
esac
cd "$ROOT"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
URL="$(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
if [ "$BUILD" = 1 ]; then
    cargo build --release -p utp-ffi --quiet
fi
REL="$ROOT/target/release"
[ -f "$REL/libutp.so" ] && [ -f "$REL/libutp.a" ] || {
    echo "install-c: target/release/libutp.so or libutp.a missing (build first)" >&2; exit 1; }

LIB="$DESTDIR$PREFIX/lib"
INC="$DESTDIR$PREFIX/include"
install -d "$LIB/pkgconfig" "$INC/libutp"
install -m 0755 "$REL/libutp.so" "$LIB/libutp.so.$VERSION"
ln -sf "libutp.so.$VERSION" "$LIB/libutp.so.0"
ln -sf "libutp.so.0" "$LIB/libutp.so"
install -m 0644 "$REL/libutp.a" "$LIB/libutp.a"
for h in utp.h utp_types.h utp_threaded.h; do
    install -m 0644 "include/$h" "$INC/$h"
    install -m 0644 "include/$h" "$INC/libutp/$h"
done

# What a static link of libutp.a needs besides libc and libgcc, which the
# compiler driver adds itself (rustc --print native-static-libs).
PRIVATE="-lutil -lrt -lpthread -lm -ldl"
RPATH=""
case "$PREFIX/lib" in
    /usr/lib|/usr/lib64|/lib|/lib64|/usr/lib/*-linux-gnu) ;;
    *) RPATH=" -Wl,-rpath,\${libdir}" ;;
esac
sed -e "s|@PREFIX@|$PREFIX|" -e "s|@VERSION@|$VERSION|" -e "s|@URL@|$URL|" \
    -e "s|@PRIVATE@|$PRIVATE|" -e "s|@RPATH@|$RPATH|" \
    utp-ffi/libutp.pc.in >"$LIB/pkgconfig/libutp.pc"
chmod 0644 "$LIB/pkgconfig/libutp.pc"

if [ -z "$DESTDIR" ] && [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then
    ldconfig "$PREFIX/lib" 2>/dev/null || true
fi
echo "install-c: installed libutp $VERSION under ${DESTDIR}${PREFIX}"
echo "install-c: build with: cc app.c \$(pkg-config --cflags --libs libutp)"
case "$PREFIX" in
    /usr|/usr/local) ;;
    *) echo "install-c: (pkg-config finds it with PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig)" ;;
esac
