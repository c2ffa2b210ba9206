#!/usr/bin/env bash
# Build REAL upstream libutp (the reference implementation) and its `ucat`
# example, for interop tests and benchmarks.
#
# Source: the libutp C++ sources vendored in the crates.io package
# `libutp-sys` 0.1.4 (directory `libutp/` of the crate), obtained with cargo
# only. Built with libutp's own, unmodified Makefile (upstream build profile:
# -DPOSIX -O3 -g -fno-exceptions, asserts active, no -DNDEBUG).
#
# Output (default: <repo>/target/libutp-ref, override with LIBUTP_REF_DIR):
#   bin/ucat           dynamic ucat, RUNPATH $ORIGIN/../lib -> lib/libutp.so
#   bin/ucat-static    ucat linked with libutp.a
#   lib/libutp.so  lib/libutp.a
#   include/utp.h  include/utp_types.h
#   src/               the copied source tree (incl. unmodified ucat.c) + objects
#   PROVENANCE.txt     crate checksum, file hashes, compiler, build command
#
# Usage: scripts/build-libutp-ref.sh [--force] [--quiet]
#   --force   rebuild even if outputs are up to date
#   --quiet   print only the final summary line(s) on success
# Prints `LIBUTP_REF_DIR=<dir>` as the last line (easy to eval/grep).
set -euo pipefail

CRATE=libutp-sys
CRATE_VERSION=0.1.4
# Bump when the build recipe below changes (forces a rebuild).
RECIPE_VERSION=1

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
OUT="${LIBUTP_REF_DIR:-$REPO_ROOT/target/libutp-ref}"
CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"

FORCE=0
QUIET=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --quiet) QUIET=1 ;;
        -h|--help) sed -n '2,24p' "$SELF"; exit 0 ;;
        *) echo "build-libutp-ref: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

log() { [ "$QUIET" = 1 ] || echo "build-libutp-ref: $*" >&2; }
die() { echo "build-libutp-ref: ERROR: $*" >&2; exit 1; }

summary() {
    if [ "$QUIET" = 0 ]; then
        cat <<EOF
real libutp (libutp-sys $CRATE_VERSION, upstream bittorrent/libutp) is in $OUT
  ucat         $OUT/bin/ucat   (dynamic, RUNPATH \$ORIGIN/../lib)
  ucat-static  $OUT/bin/ucat-static
  libraries    $OUT/lib/libutp.so  $OUT/lib/libutp.a
  headers      $OUT/include/utp.h  $OUT/include/utp_types.h
  ucat source  $OUT/src/ucat.c
  provenance   $OUT/PROVENANCE.txt
EOF
    fi
    echo "LIBUTP_REF_DIR=$OUT"
}

OUTPUTS=(bin/ucat bin/ucat-static lib/libutp.so lib/libutp.a
         include/utp.h include/utp_types.h src/ucat.c)
STAMP="$OUT/.build-stamp"
STAMP_KEY="crate=$CRATE-$CRATE_VERSION recipe=$RECIPE_VERSION"

up_to_date() {
    [ -f "$STAMP" ] || return 1
    [ "$(cat "$STAMP")" = "$STAMP_KEY" ] || return 1
    # the stamp must be newer than this script and than every source file
    [ "$STAMP" -nt "$SELF" ] || return 1
    local f
    for f in "${OUTPUTS[@]}"; do
        [ -e "$OUT/$f" ] || return 1
    done
    [ -z "$(find "$OUT/src" -maxdepth 1 -type f \( -name '*.c' -o -name '*.cpp' -o -name '*.h' -o -name Makefile \) -newer "$STAMP" -print -quit)" ] || return 1
    # binaries must be newer than the objects they come from
    for f in bin/ucat bin/ucat-static lib/libutp.so lib/libutp.a; do
        [ "$OUT/$f" -nt "$OUT/src/ucat.c" ] || return 1
    done
    return 0
}

# Fast path, no lock, no cargo.
if [ "$FORCE" = 0 ] && up_to_date; then
    log "up to date (use --force to rebuild)"
    summary
    exit 0
fi

mkdir -p "$OUT"
# Serialize concurrent invocations (parallel test runners).
exec 9>"$OUT/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
    if [ "$FORCE" = 0 ] && up_to_date; then
        log "up to date (built by a concurrent invocation)"
        summary
        exit 0
    fi
fi

# ---------------------------------------------------------------- toolchain
need_apt=()
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
command -v ar >/dev/null 2>&1 || need_apt+=(binutils)
if [ "${#need_apt[@]}" -gt 0 ]; then
    log "installing missing build tools: ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >&2
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found (needed to fetch $CRATE from crates.io)"

# ---------------------------------------------------------------- fetch
# Always go through a throwaway cargo project: cargo resolves, downloads and
# verifies the .crate checksum, and `cargo metadata` tells us where the
# unpacked source is (works with any registry mirror / CARGO_HOME).
TMP="$(mktemp -d "${TMPDIR:-/tmp}/libutp-ref-fetch.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/proj/src"
cat >"$TMP/proj/Cargo.toml" <<EOF
[package]
name = "libutp-ref-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$CRATE = "=$CRATE_VERSION"

[workspace]
EOF
echo 'fn main() {}' >"$TMP/proj/src/main.rs"
HOST_TRIPLE="$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')"
log "fetching $CRATE $CRATE_VERSION with cargo"
(
    cd "$TMP/proj"
    if [ -n "$HOST_TRIPLE" ]; then
        cargo fetch --quiet --target "$HOST_TRIPLE"
    else
        cargo fetch --quiet
    fi
    cargo metadata --quiet --format-version 1 ${HOST_TRIPLE:+--filter-platform "$HOST_TRIPLE"} >"$TMP/metadata.json"
) >&2 || die "cargo could not fetch $CRATE $CRATE_VERSION"

MANIFEST="$(grep -o "\"manifest_path\":\"[^\"]*/$CRATE-$CRATE_VERSION/Cargo.toml\"" "$TMP/metadata.json" | head -n1 | sed 's/^"manifest_path":"//; s/"$//')"
if [ -z "$MANIFEST" ]; then
    # fallback: look in the registry cache directly
    MANIFEST="$(ls -d "$CARGO_HOME_DIR"/registry/src/*/"$CRATE-$CRATE_VERSION"/Cargo.toml 2>/dev/null | head -n1 || true)"
fi
[ -n "$MANIFEST" ] && [ -f "$MANIFEST" ] || die "cannot locate the unpacked $CRATE-$CRATE_VERSION source"
CRATE_DIR="$(dirname "$MANIFEST")"
UPSTREAM="$CRATE_DIR/libutp"
for f in Makefile ucat.c utp.h utp_types.h utp_internal.cpp utp_api.cpp; do
    [ -f "$UPSTREAM/$f" ] || die "$UPSTREAM/$f missing: unexpected crate layout"
done
CRATE_SHA256="$(grep -A3 "name = \"$CRATE\"" "$TMP/proj/Cargo.lock" | sed -n 's/^checksum = "\(.*\)"/\1/p' | head -n1)"
log "source: $UPSTREAM"

# ---------------------------------------------------------------- copy
# The crate ships every file with CRLF line endings (upstream git has LF).
# We copy the tree and normalise text files to LF so that src/ is
# byte-identical to upstream's files; nothing else is changed. (GNU make and
# gcc would also accept the CRLF files as they are.)
rm -rf "$OUT/src" "$OUT/bin" "$OUT/lib" "$OUT/include" "$STAMP"
mkdir -p "$OUT/src" "$OUT/bin" "$OUT/lib" "$OUT/include"
cp -R "$UPSTREAM/." "$OUT/src/"
chmod -R u+w "$OUT/src"
( cd "$OUT/src" && sha256sum $(find . -type f | sort) ) >"$TMP/orig.sha256"
find "$OUT/src" -type f \( -name '*.c' -o -name '*.cpp' -o -name '*.h' -o -name Makefile \
     -o -name '*.md' -o -name '*.py' -o -name LICENSE -o -name '.gitignore' \) \
     -exec sed -i 's/\r$//' {} +
touch "$OUT/src"/*   # copies carry the crate's 1970 mtimes; make needs sane ones

# ---------------------------------------------------------------- build
# Upstream Makefile, unmodified. The only addition is LDFLAGS from the
# environment, which the Makefile extends with `+=` (-lrt): it gives ucat a
# RUNPATH of $ORIGIN/../lib so bin/ucat finds lib/libutp.so without
# LD_LIBRARY_PATH ($$ is make's escape for $, the quotes are for the shell).
JOBS="$(nproc 2>/dev/null || echo 2)"
BUILD_LDFLAGS="-Wl,-rpath,'\$\$ORIGIN/../lib'"
log "building with upstream Makefile (make -j$JOBS all)"
start_ns=$(date +%s%N)
if ! ( cd "$OUT/src" && LDFLAGS="$BUILD_LDFLAGS" make -j"$JOBS" all ) >"$OUT/build.log" 2>&1; then
    cat "$OUT/build.log" >&2
    die "make failed (log: $OUT/build.log)"
fi
build_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
nwarn=$(grep -c 'warning:' "$OUT/build.log" || true)
log "built in ${build_ms} ms, $nwarn compiler warning(s) (see $OUT/build.log)"

# ---------------------------------------------------------------- install
cp -p "$OUT/src/ucat" "$OUT/src/ucat-static" "$OUT/bin/"
cp -p "$OUT/src/libutp.so" "$OUT/src/libutp.a" "$OUT/lib/"
cp -p "$OUT/src/utp.h" "$OUT/src/utp_types.h" "$OUT/include/"

# ---------------------------------------------------------------- checks
"$OUT/bin/ucat" -h >/dev/null 2>&1 || true   # ucat -h exits 1; only checks it loads
if command -v ldd >/dev/null 2>&1; then
    resolved="$(env -u LD_LIBRARY_PATH ldd "$OUT/bin/ucat" | sed -n 's/^[[:space:]]*libutp\.so => \([^ ]*\) .*/\1/p')"
    [ -n "$resolved" ] && [ "$(readlink -f "$resolved")" = "$(readlink -f "$OUT/lib/libutp.so")" ] \
        || die "bin/ucat does not resolve lib/libutp.so via its RUNPATH: $(ldd "$OUT/bin/ucat" | grep libutp)"
fi
nfunc="?"
if command -v nm >/dev/null 2>&1; then
    nfunc=$(nm -D --defined-only "$OUT/lib/libutp.so" | grep -c ' T utp_' || true)
    [ "$nfunc" = 28 ] || log "WARNING: expected 28 exported utp_* functions, found $nfunc"
fi

# ---------------------------------------------------------------- provenance
{
    echo "libutp reference build"
    echo "built:        $(date -u +%Y-%m-%dT%H:%M:%SZ) by scripts/build-libutp-ref.sh (recipe $RECIPE_VERSION)"
    echo "crate:        $CRATE $CRATE_VERSION (crates.io), .crate sha256 ${CRATE_SHA256:-unknown}"
    echo "crate vcs:    johsunds/libutp-sys commit $(grep -o '"sha1": *"[0-9a-f]*"' "$CRATE_DIR/.cargo_vcs_info.json" 2>/dev/null | grep -o '[0-9a-f]\{40\}' || echo unknown); libutp/ is its git submodule (johsunds/libutp, commit not recorded in the crate)"
    echo "crate dir:    $CRATE_DIR"
    echo "upstream:     matches bittorrent/libutp master 2b364cb (see interop/README.md)"
    echo "normalised:   CRLF -> LF in text files of src/ (no other change)"
    echo "compiler:     $(gcc --version | head -n1); $(g++ --version | head -n1)"
    echo "make:         $(make --version | head -n1)"
    echo "build:        cd src && LDFLAGS=\"$BUILD_LDFLAGS\" make -j$JOBS all   (${build_ms} ms, $nwarn warnings)"
    echo "exported:     $nfunc utp_* functions in lib/libutp.so"
    echo
    echo "sha256 of the crate's files as shipped (CRLF):"
    cat "$TMP/orig.sha256"
    echo
    echo "sha256 of the normalised sources used for the build:"
    ( cd "$OUT/src" && sha256sum $(ls Makefile *.c *.cpp *.h) )
    echo
    echo "sha256 of outputs:"
    ( cd "$OUT" && sha256sum "${OUTPUTS[@]}" )
} >"$OUT/PROVENANCE.txt"

echo "$STAMP_KEY" >"$STAMP"
summary
