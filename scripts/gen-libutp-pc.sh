#!/usr/bin/env bash
# Write a pkg-config file for our libutp from utp-ffi/libutp.pc.in.
#
# Usage: scripts/gen-libutp-pc.sh [PREFIX] [OUTDIR]
#   PREFIX  where lib/ and include/ are (default: this repository, using
#           target/release as libdir and include/ as includedir)
#   OUTDIR  where to write libutp.pc (default: target/release/pkgconfig)
# Then: PKG_CONFIG_PATH=target/release/pkgconfig pkg-config --cflags --libs libutp
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${1:-}"
OUT="${2:-$ROOT/target/release/pkgconfig}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)"
if [ -z "$PREFIX" ]; then
    PREFIX="$ROOT"; LIBDIR="$ROOT/target/release"; INCLUDEDIR="$ROOT/include"
else
    LIBDIR='${prefix}/lib'; INCLUDEDIR='${prefix}/include'
fi
mkdir -p "$OUT"
sed -e "s|@PREFIX@|$PREFIX|" -e "s|@LIBDIR@|$LIBDIR|" -e "s|@INCLUDEDIR@|$INCLUDEDIR|" \
    -e "s|@VERSION@|$VERSION|" "$ROOT/utp-ffi/libutp.pc.in" >"$OUT/libutp.pc"
echo "$OUT/libutp.pc"
