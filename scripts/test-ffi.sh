#!/usr/bin/env bash
# Drop-in test of our libutp (crate utp-ffi) against REAL libutp.
#
#  1. builds target/release/libutp.so (SONAME libutp.so.0) and libutp.a;
#  2. checks the generated header (scripts/check-headers.sh) and the ABI
#     layout (utp-ffi/tests/c/layout.c as C, C with <stdbool.h>, and C++,
#     all -Wall -Werror, then run);
#  3. compiles real libutp's UNMODIFIED ucat.c against include/ and links it
#     with -lutp (dynamic) and with libutp.a (static), then proves with
#     readelf/nm that the binaries use our library and not libutp's C++ code;
#  4. transfers TRANSFER_BYTES (default 5 MB) of random data byte-exact over
#     127.0.0.1 (via scripts/ucat-smoke.sh): real listener <- our sender,
#     our listener <- real sender, ours <-> ours, our static ucat <-> real,
#     and the real ucat *binary* running on our libutp.so (LD_LIBRARY_PATH);
#  5. the refused case: our ucat to a closed port reports UTP_ECONNREFUSED;
#  6. builds and runs the echo examples (examples/c): caller-driven
#     utp_echo and threaded utpt_echo (two clients at once);
#  7. runs the C misuse/lifecycle tests (utp-ffi/tests/c/misuse.c) under
#     Valgrind (--error-exitcode=1), static and dynamic;
#  8. the threaded API (utp_threaded.h): exports match the header; the C test
#     utp-ffi/tests/c/threaded.c (client + server threads, TRANSFER_BYTES
#     byte-exact with poll() on utpt_fd, ECONNREFUSED, timeouts, misuse)
#     natively, then under Valgrind with THREADED_VALGRIND_BYTES (500 kB);
#  9. the misuse and threaded tests and the examples again, built with
#     AddressSanitizer (leak check on) and UndefinedBehaviorSanitizer.
#
# Loopback only; every process is killed on exit (ucat-smoke.sh traps).
# Prints "N passed, N failed" last; exit code 0 only if nothing failed.
# Environment: TRANSFER_BYTES, TRANSFER_TIMEOUT (s, default 60),
#              THREADED_VALGRIND_BYTES, SKIP_VALGRIND=1, SKIP_HEADER_CHECK=1.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BYTES="${TRANSFER_BYTES:-5000000}"
TIMEOUT_S="${TRANSFER_TIMEOUT:-60}"
REL="$ROOT/target/release"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/test-ffi.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
PASS=0
FAIL=0
SUMMARY=()

ok()   { PASS=$((PASS + 1)); SUMMARY+=("ok    $*"); echo "test-ffi: ok: $*"; }
bad()  { FAIL=$((FAIL + 1)); SUMMARY+=("FAIL  $*"); echo "test-ffi: FAIL: $*" >&2; }
die()  { echo "test-ffi: ERROR: $*" >&2; exit 1; }

# ------------------------------------------------------------------ build
echo "test-ffi: building utp-ffi (release)"
cargo build --release -p utp-ffi --quiet || die "cargo build failed"
[ -f "$REL/libutp.so" ] && [ -f "$REL/libutp.a" ] || die "libutp.so / libutp.a missing"
# The SONAME is libutp.so.0: programs linked with -lutp need that name at run
# time, and the build (utp-ffi/build.rs) leaves that link beside libutp.so.
[ "$(readlink "$REL/libutp.so.0")" = libutp.so ] && ok "target/release/libutp.so.0 -> libutp.so" ||
    bad "the build left no libutp.so.0 link"
soname=$(readelf -d "$REL/libutp.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libutp.so.0" ] && ok "libutp.so SONAME is $soname" || bad "SONAME is '$soname'"

nfun=$(nm -D --defined-only "$REL/libutp.so" | awk '$2 == "T" && $3 ~ /^utp_/' | wc -l)
[ "$nfun" = 28 ] && ok "libutp.so exports the 28 utp_* functions" || bad "libutp.so exports $nfun utp_* functions (want 28)"
sizes=$(nm -DS --defined-only "$REL/libutp.so" | awk '$4 ~ /_names$/ {print $4, $2}' | sort |
        while read -r name hex; do printf '%s=%d ' "$name" "$((16#$hex))"; done)
[ "$sizes" = "utp_callback_names=128 utp_error_code_names=24 utp_state_names=40 " ] &&
    ok "name tables are data symbols of 128/24/40 bytes" || bad "name table sizes: $sizes"
others=$(nm -D --defined-only "$REL/libutp.so" | awk '$3 !~ /^utpt?_/ {print $3}' | tr '\n' ' ')
if [ -n "$others" ]; then
    bad "libutp.so exports symbols besides utp_* and utpt_*: $others"
else
    ok "libutp.so exports nothing but utp_* and utpt_* (no C++ or Rust internals)"
fi
# The threaded API: exactly the functions utp_threaded.h declares.
exported=$(nm -D --defined-only "$REL/libutp.so" | awk '$2 == "T" && $3 ~ /^utpt_/ {print $3}' | sort | tr '\n' ' ')
declared=$(grep -oE '\butpt_[a-z_]+\(' include/utp_threaded.h | tr -d '(' | sort -u | tr '\n' ' ')
if [ -n "$exported" ] && [ "$exported" = "$declared" ]; then
    ok "libutp.so exports the $(wc -w <<<"$exported") utpt_* functions utp_threaded.h declares"
else
    bad "utpt_* exports [$exported] differ from utp_threaded.h [$declared]"
fi

# ------------------------------------------------------------------ headers and layout
if [ "${SKIP_HEADER_CHECK:-0}" != 1 ]; then
    if scripts/check-headers.sh; then ok "include/utp.h and utp_threaded.h are up to date (cbindgen, pinned)"; else
        rc=$?; [ $rc = 77 ] && echo "test-ffi: header check skipped" || bad "include/utp.h or utp_threaded.h differs from cbindgen output"
    fi
fi
for cc in "gcc -x c -std=gnu11" "gcc -x c -std=c11 -Wpedantic" "gcc -x c -std=gnu11 -DWITH_STDBOOL" \
          "g++ -x c++ -std=c++11" "g++ -x c++ -std=c++17 -Wpedantic"; do
    if $cc -Wall -Wextra -Werror -DPOSIX -I include utp-ffi/tests/c/layout.c -x none \
           -L "$REL" -lutp -Wl,-rpath,"$REL" -o "$WORK/layout" && "$WORK/layout" >/dev/null; then
        ok "layout/constants/name tables: $cc"
    else
        bad "layout test with: $cc"
    fi
done

# ------------------------------------------------------------------ ucat against our library
eval "$(scripts/build-libutp-ref.sh --quiet | grep ^LIBUTP_REF_DIR=)"
REF="$LIBUTP_REF_DIR"
[ -f "$REF/src/ucat.c" ] || die "real libutp reference build missing ($REF)"
mkdir -p "$WORK/bin"
if gcc -Wall -DPOSIX -g -fno-exceptions -O3 -I include -c "$REF/src/ucat.c" -o "$WORK/ucat.o" 2>"$WORK/ucat.warn" &&
   [ ! -s "$WORK/ucat.warn" ]; then
    ok "unmodified ucat.c compiles against include/utp.h with zero warnings (gcc -Wall)"
else
    cat "$WORK/ucat.warn" >&2; bad "ucat.c does not compile cleanly against our headers"
fi
gcc -o "$WORK/bin/ucat" "$WORK/ucat.o" -L "$REL" -lutp -Wl,-rpath,"$REL" || bad "link ucat with -lutp"
# Static, as upstream's ucat-static (g++); Rust's staticlib needs these system libraries.
g++ -o "$WORK/bin/ucat-static" "$WORK/ucat.o" "$REL/libutp.a" -lpthread -ldl -lm ||
    bad "link ucat-static with libutp.a"
OURS="$WORK/bin/ucat"
OURS_STATIC="$WORK/bin/ucat-static"
REAL="$REF/bin/ucat"

# Dynamic: needs our libutp.so.0, resolves to target/release, no libstdc++ (real libutp needs it).
needed=$(readelf -d "$OURS" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
resolved=$(ldd "$OURS" | awk '$1 ~ /^libutp/ {print $3}')
if [[ " $needed " == *" libutp.so.0 "* && "$resolved" == "$REL/libutp.so.0" && " $needed " != *libstdc++* ]]; then
    ok "dynamic ucat: NEEDED [$needed], libutp resolves to $resolved"
else
    bad "dynamic ucat links to the wrong library: NEEDED [$needed] -> $resolved"
fi
nm "$OURS" >"$WORK/nm-ucat"
nm "$OURS_STATIC" >"$WORK/nm-ucat-static"
if grep -q ' T utp_' "$WORK/nm-ucat"; then bad "dynamic ucat defines utp_* itself"; else
    ok "dynamic ucat imports every utp_* symbol (U in nm)"; fi
# Static: utp_* defined inside, our engine is there, libutp's C++ classes are not.
if grep -q ' T utp_process_udp$' "$WORK/nm-ucat-static" &&
   grep -q 'utp_core' "$WORK/nm-ucat-static" &&
   ! grep -q 'UTPSocket' "$WORK/nm-ucat-static" &&
   [ -z "$(readelf -d "$OURS_STATIC" | awk '/NEEDED/ && /libutp/')" ]; then
    ok "static ucat contains our utp_* (utp_core inside, no libutp UTPSocket code, no libutp.so)"
else
    bad "static ucat does not look like ours"
fi
# The real ucat BINARY on our shared library (binary drop-in): a directory
# where libutp.so (its NEEDED name) is ours; LD_LIBRARY_PATH beats its RUNPATH.
mkdir -p "$WORK/ourlib"
ln -sf "$REL/libutp.so" "$WORK/ourlib/libutp.so"
cat >"$WORK/bin/real-ucat-on-our-lib" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$WORK/ourlib" exec "$REAL" "\$@"
EOF
chmod +x "$WORK/bin/real-ucat-on-our-lib"
LD_LIBRARY_PATH="$WORK/ourlib" ldd "$REAL" >"$WORK/ldd-real" 2>&1
if grep -q "$WORK/ourlib/libutp.so" "$WORK/ldd-real"; then
    ok "real ucat binary resolves libutp.so to ours under LD_LIBRARY_PATH"
else
    bad "real ucat binary does not pick up our libutp.so"
fi

# ------------------------------------------------------------------ transfers
transfer() {  # NAME LISTENER SENDER
    local name=$1 out
    out=$(UCAT_LISTEN="$2" UCAT_SEND="$3" SMOKE_BYTES="$BYTES" SMOKE_TIMEOUT="$TIMEOUT_S" \
          timeout $((TIMEOUT_S + 30)) scripts/ucat-smoke.sh 2>&1)
    local line; line=$(grep -m1 'transfer OK' <<<"$out" || true)
    if [ -n "$line" ] && grep -q 'ucat-smoke: PASS' <<<"$out"; then
        ok "$name: ${line#*transfer OK: }"
    else
        echo "$out" | tail -15 >&2
        bad "$name: transfer of $BYTES bytes failed"
    fi
}
transfer "real listener <- our sender"        "$REAL" "$OURS"
transfer "our listener  <- real sender"       "$OURS" "$REAL"
transfer "ours <-> ours"                      "$OURS" "$OURS"
transfer "real listener <- our static sender" "$REAL" "$OURS_STATIC"
transfer "our static listener <- real sender" "$OURS_STATIC" "$REAL"
transfer "real ucat binary on our .so, both ends" "$WORK/bin/real-ucat-on-our-lib" "$WORK/bin/real-ucat-on-our-lib"

# ------------------------------------------------------------------ refused
port=$(( 40000 + RANDOM % 20000 ))
set +e
timeout 10 "$OURS" 127.0.0.1 "$port" </dev/null >/dev/null 2>"$WORK/refused.err"
rc=$?
set -e 2>/dev/null; set +e
if grep -q 'Error: UTP_ECONNREFUSED' "$WORK/refused.err" && [ "$rc" = 1 ]; then
    ok "refused: our ucat to closed port $port -> 'Error: UTP_ECONNREFUSED', exit 1 (as libutp)"
else
    bad "refused: exit $rc, stderr: $(head -3 "$WORK/refused.err" | tr '\n' ' ')"
fi

# ------------------------------------------------------------------ the C example
if out=$(make -s -C examples/c clean test 2>&1); then
    ok "examples/c: $(grep -c 'printed' <<<"$out") echo round trips; $(tail -1 <<<"$out")"
else
    echo "$out" | tail -10 >&2; bad "examples/c echo round trips"
fi
make -s -C examples/c clean >/dev/null 2>&1 || true

# ------------------------------------------------------------------ misuse tests under Valgrind
gcc -Wall -Wextra -Werror -g -DPOSIX -I include utp-ffi/tests/c/misuse.c -L "$REL" -lutp \
    -Wl,-rpath,"$REL" -o "$WORK/misuse" || bad "compile misuse.c"
gcc -Wall -Wextra -Werror -g -DPOSIX -I include utp-ffi/tests/c/misuse.c "$REL/libutp.a" \
    -lpthread -ldl -lm -o "$WORK/misuse-static" || bad "compile misuse.c (static)"
for t in misuse misuse-static; do
    if [ "${SKIP_VALGRIND:-0}" != 1 ] && command -v valgrind >/dev/null 2>&1; then
        if out=$(timeout 300 valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
                 "$WORK/$t" 2>&1); then
            ok "$t under valgrind: $(tail -1 <<<"$out")"
        else
            echo "$out" | tail -30 >&2; bad "$t under valgrind"
        fi
    else
        if out=$(timeout 120 "$WORK/$t" 2>&1); then ok "$t (no valgrind): $(tail -1 <<<"$out")"; else
            echo "$out" | tail -30 >&2; bad "$t"; fi
    fi
done

# ------------------------------------------------------------------ threaded API (utp_threaded.h)
gcc -Wall -Wextra -Werror -g -I include utp-ffi/tests/c/threaded.c -L "$REL" -lutp -lpthread \
    -Wl,-rpath,"$REL" -o "$WORK/threaded" || bad "compile threaded.c"
gcc -Wall -Wextra -Werror -g -I include utp-ffi/tests/c/threaded.c "$REL/libutp.a" \
    -lpthread -ldl -lm -o "$WORK/threaded-static" || bad "compile threaded.c (static)"
if out=$(timeout 120 "$WORK/threaded" "$BYTES" 2>&1); then
    ok "threaded: $(grep -m1 '^transfer:' <<<"$out" | cut -c11-); $(grep -m1 '^refused:' <<<"$out" | cut -c10-); $(tail -1 <<<"$out")"
else
    echo "$out" | tail -30 >&2; bad "threaded C test ($BYTES bytes)"
fi
VG_BYTES="${THREADED_VALGRIND_BYTES:-500000}"
for t in threaded threaded-static; do
    if [ "${SKIP_VALGRIND:-0}" != 1 ] && command -v valgrind >/dev/null 2>&1; then
        # --show-leak-kinds=definite: I/O threads that are still finishing at
        # exit (the refused connection lingers) hold "possibly lost" blocks.
        if out=$(timeout 300 valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
                 --show-leak-kinds=definite \
                 "$WORK/$t" "$VG_BYTES" 2>&1); then
            ok "$t under valgrind ($VG_BYTES bytes): $(tail -1 <<<"$out")"
        else
            echo "$out" | tail -30 >&2; bad "$t under valgrind"
        fi
    else
        if out=$(timeout 120 "$WORK/$t" "$VG_BYTES" 2>&1); then ok "$t (no valgrind): $(tail -1 <<<"$out")"; else
            echo "$out" | tail -30 >&2; bad "$t"; fi
    fi
done

# ------------------------------------------------------------------ sanitizers
# The C tests and the examples built with AddressSanitizer (with its leak
# check) and UndefinedBehaviorSanitizer, linked with our libutp.so; any
# report fails (-fno-sanitize-recover, ASan's default exit code).
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
if echo 'int main(void){return 0;}' | gcc $SAN -x c - -o "$WORK/san-probe" 2>/dev/null && "$WORK/san-probe"; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
    gcc -Wall -Wextra -Werror -g $SAN -DPOSIX -I include utp-ffi/tests/c/misuse.c -L "$REL" -lutp \
        -Wl,-rpath,"$REL" -o "$WORK/misuse-san" || bad "compile misuse.c with sanitizers"
    gcc -Wall -Wextra -Werror -g $SAN -I include utp-ffi/tests/c/threaded.c -L "$REL" -lutp -lpthread \
        -Wl,-rpath,"$REL" -o "$WORK/threaded-san" || bad "compile threaded.c with sanitizers"
    if out=$(timeout 300 "$WORK/misuse-san" 2>&1); then ok "misuse under ASan+UBSan: $(tail -1 <<<"$out")"; else
        echo "$out" | tail -30 >&2; bad "misuse under ASan+UBSan"; fi
    if out=$(timeout 300 "$WORK/threaded-san" "$BYTES" 2>&1); then
        ok "threaded under ASan+UBSan ($BYTES bytes): $(tail -1 <<<"$out")"
    else
        echo "$out" | tail -30 >&2; bad "threaded under ASan+UBSan"
    fi
    if out=$(make -s -C examples/c clean test CFLAGS="-O1 -g -Wall -Wextra -Werror $SAN" 2>&1); then
        ok "examples/c under ASan+UBSan: $(tail -1 <<<"$out")"
    else
        echo "$out" | tail -20 >&2; bad "examples/c under ASan+UBSan"
    fi
    make -s -C examples/c clean >/dev/null 2>&1 || true
    unset ASAN_OPTIONS UBSAN_OPTIONS
else
    bad "gcc cannot build with -fsanitize=address,undefined (libasan/libubsan missing?)"
fi

echo
echo "test-ffi summary:"
printf '  %s\n' "${SUMMARY[@]}"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
