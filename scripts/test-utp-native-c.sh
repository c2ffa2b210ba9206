#!/usr/bin/env bash
# utp-native 2.5.3's own C++ addon (binding.cc, libutp's C API driven through
# N-API) built twice from the npm tarball, and the package's own tape tests
# run, unmodified, against each build:
#   real  binding.cc + the libutp sources utp-native ships in deps/libutp,
#         compiled and linked statically as its binding.gyp does (that copy
#         is bittorrent/libutp plus two small patches of mafintosh's fork);
#         UTP_NATIVE_REF=upstream uses instead the upstream libutp built by
#         scripts/build-libutp-ref.sh (its utp.h, linked with its libutp.so);
#   ours  binding.cc compiled against OUR include/utp.h (it replaces
#         deps/libutp, which binding.cc includes as "./deps/libutp/utp.h")
#         and linked with target/release/libutp.so (-lutp, RUNPATH).
# No node-gyp: N-API headers from the npm package node-api-headers, uv.h from
# the running node's own include/node, napi-macros from the package's deps;
# g++ with the flags binding.gyp and node-gyp's common.gypi give. Each build
# lives in its own copy of the package without prebuilds/, so node-gyp-build
# loads build/Release/utp_native.node; readelf/ldd/nm and the running
# process's /proc/self/maps prove which libutp each build uses.
# Then test/net.js, sockets.js, udp.js and timeouts.js run with each build
# (timeouts.js of both builds in the background, beside the others: it takes
# ~110 s with real libutp). Prints a table of tape cases and assertions; fails
# unless every case passes with both builds and both pass the same ones.
# Loopback only; npm fetches utp-native, its dependencies, tape and
# node-api-headers. Every process is killed on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REL="$ROOT/target/release"
REF_KIND="${UTP_NATIVE_REF:-deps}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/test-utp-native-c.XXXXXX")"
BG=()
# Every test process is a `timeout` whose pid is in $WORK/pids/ (timeout
# passes the TERM on to node); BG holds the background shells that wait.
cleanup() {
    local f p
    for f in "$WORK"/pids/*; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
    for p in "${BG[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
# node-gyp-build would load another addon if these were set.
unset PREBUILDS_ONLY UTP_NATIVE_PREBUILD
FILES=(net sockets udp timeouts)
START=$(date +%s)

say() { echo "test-utp-native-c: $*"; }
die() { echo "test-utp-native-c: FAIL: $*" >&2; exit 1; }

case "$REF_KIND" in deps|upstream) ;; *) die "UTP_NATIVE_REF must be deps or upstream" ;; esac

# ------------------------------------------------------------------ inputs
say "building utp-ffi (release)"
cargo build --release -p utp-ffi --quiet
[ -f "$REL/libutp.so" ] && [ -e "$REL/libutp.so.0" ] || die "target/release/libutp.so(.0) missing"

say "fetching utp-native@2.5.3, tape and node-api-headers"
(cd "$WORK" && npm pack --silent utp-native@2.5.3 >/dev/null)
echo '{"name":"utp-native-c-tests","version":"1.0.0","private":true}' >"$WORK/package.json"
# In $WORK/node_modules, found by Node from both copies of the package below.
(cd "$WORK" && npm install --silent tape@4.17.0 node-api-headers@1.9.0)
NAPI_INC="$WORK/node_modules/node-api-headers/include"
[ -f "$NAPI_INC/node_api.h" ] || die "node-api-headers has no include/node_api.h"

# binding.cc includes <uv.h>; node-api-headers has none. Use the headers of
# the node that runs the tests (node installs them in <prefix>/include/node),
# alone in a folder so that node_api.h can only come from node-api-headers.
NODE_VERSION="$(node -p process.versions.node)"
NODE_PREFIX="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
UV_SRC=""
for d in "${NODE_INCLUDE_DIR:-}" "$NODE_PREFIX/include/node" "$HOME/.cache/node-gyp/$NODE_VERSION/include/node" \
         "$HOME/.node-gyp/$NODE_VERSION/include/node"; do
    [ -n "$d" ] && [ -f "$d/uv.h" ] && { UV_SRC="$d"; break; }
done
[ -n "$UV_SRC" ] || die "no uv.h for node $NODE_VERSION (set NODE_INCLUDE_DIR to node's include/node)"
UV_VERSION="$(node -p process.versions.uv)"
hdr_uv="$(awk '/define UV_VERSION_(MAJOR|MINOR|PATCH)/ {printf "%s%s", sep, $3; sep="."}' "$UV_SRC/uv/version.h")"
[ "$hdr_uv" = "$UV_VERSION" ] || die "$UV_SRC/uv.h is libuv $hdr_uv, node $NODE_VERSION runs libuv $UV_VERSION"
mkdir -p "$WORK/uv-include"
ln -s "$UV_SRC/uv.h" "$UV_SRC/uv" "$WORK/uv-include/"

# Two copies of the package, without the prebuilt addons, with their runtime
# dependencies (napi-macros, node-gyp-build, readable-stream, ...).
for b in real ours; do
    mkdir -p "$WORK/$b"
    tar xzf "$WORK/utp-native-2.5.3.tgz" -C "$WORK/$b" --strip-components=1
    rm -rf "$WORK/$b/prebuilds"
done
(cd "$WORK/real" && npm install --silent --ignore-scripts --omit=dev)
cp -a "$WORK/real/node_modules" "$WORK/ours/"
[ -f "$WORK/real/node_modules/napi-macros/napi-macros.h" ] || die "napi-macros missing"

# ------------------------------------------------------------------ builds
# binding.gyp: target utp_native = binding.cc, -O3, include dirs napi-macros
# and deps/libutp, plus deps/libutp.gyp's static libutp (-DPOSIX -O3). The
# rest is what node-gyp's common.gypi adds on Linux.
GYP_FLAGS=(-fPIC -pthread -O3 -fno-omit-frame-pointer -fno-rtti -fno-exceptions -std=gnu++17
           -DNODE_GYP_MODULE_NAME=utp_native -DUSING_UV_SHARED=1 -DUSING_V8_SHARED=1
           -DV8_DEPRECATION_WARNINGS=1 -D_LARGEFILE_SOURCE -D_FILE_OFFSET_BITS=64
           -DBUILDING_NODE_EXTENSION)
build_binding() {  # DIR UTP_INCLUDE_DIR LINK-ARGS...
    local dir=$1 inc=$2; shift 2
    mkdir -p "$dir/build/Release" "$dir/build/obj"
    g++ "${GYP_FLAGS[@]}" -Wall -I "$NAPI_INC" -I "$WORK/uv-include" -I "$dir/node_modules/napi-macros" \
        -I "$inc" -c "$dir/binding.cc" -o "$dir/build/obj/binding.o" 2>"$dir/build/binding.warnings"
    g++ -shared -pthread -rdynamic -o "$dir/build/Release/utp_native.node" "$dir/build/obj/binding.o" "$@"
}

R="$WORK/real"
if [ "$REF_KIND" = deps ]; then
    say "build real: binding.cc + utp-native's deps/libutp (static, as binding.gyp)"
    pids=()
    for f in utp_internal utp_utils utp_hash utp_callbacks utp_api utp_packedsockaddr; do
        mkdir -p "$R/build/obj"
        g++ "${GYP_FLAGS[@]}" -DPOSIX -c "$R/deps/libutp/$f.cpp" -o "$R/build/obj/$f.o" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || die "compiling deps/libutp failed"; done
    (cd "$R/build/obj" && ar rcs libutp.a utp_*.o)
    build_binding "$R" "$R/deps/libutp" "$R/build/obj/libutp.a"
    REAL_DESC="utp-native's deps/libutp, static"
else
    eval "$(scripts/build-libutp-ref.sh --quiet | grep ^LIBUTP_REF_DIR=)"
    REF="$LIBUTP_REF_DIR"
    say "build real: binding.cc + upstream libutp ($REF/lib/libutp.so)"
    rm -rf "$R/deps/libutp" && mkdir -p "$R/deps/libutp"
    cp "$REF/include/utp.h" "$REF/include/utp_types.h" "$R/deps/libutp/"
    build_binding "$R" "$R/deps/libutp" -L "$REF/lib" -lutp -Wl,-rpath,"$REF/lib"
    REAL_DESC="upstream libutp ($REF/lib/libutp.so)"
fi

O="$WORK/ours"
say "build ours: binding.cc + include/utp.h, linked with target/release/libutp.so"
# binding.cc includes "./deps/libutp/utp.h": that folder now holds our headers only.
rm -rf "$O/deps/libutp" && mkdir -p "$O/deps/libutp"
cp include/utp.h include/utp_types.h "$O/deps/libutp/"
build_binding "$O" "$O/deps/libutp" -L "$REL" -lutp -Wl,-rpath,"$REL"

# Same warnings from binding.cc with either header (paths aside)?
w_real=$(sed "s#$R/##g" "$R/build/binding.warnings" | grep -c 'warning:' || true)
w_ours=$(sed "s#$O/##g" "$O/build/binding.warnings" | grep -c 'warning:' || true)
say "binding.cc -Wall: $w_real warning(s) with libutp's utp.h, $w_ours with ours"
if [ "$w_ours" != "$w_real" ]; then
    cat "$O/build/binding.warnings" >&2
    die "binding.cc warns differently against include/utp.h"
fi

# ------------------------------------------------------------------ which libutp?
ra="$R/build/Release/utp_native.node"
oa="$O/build/Release/utp_native.node"
needed() { readelf -d "$1" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' '; }
o_needed=$(needed "$oa")
o_resolved=$(ldd "$oa" | awk '$1 ~ /^libutp/ {print $3}')
[[ " $o_needed " == *" libutp.so.0 "* && "$o_resolved" == "$REL/libutp.so.0" ]] ||
    die "ours: NEEDED [$o_needed], libutp -> '$o_resolved' (want $REL/libutp.so.0)"
# (nm into files: grep -q closing a pipe early would fail under pipefail)
nm -D "$oa" >"$WORK/nm-D-ours"; nm -C "$oa" >"$WORK/nm-ours"
nm -D --defined-only "$ra" >"$WORK/nm-D-real"; nm -C "$ra" >"$WORK/nm-real"
grep -q ' U utp_process_udp$' "$WORK/nm-D-ours" || die "ours: utp_process_udp is not imported"
if grep -q 'UTPSocket' "$WORK/nm-ours"; then die "ours: contains libutp's UTPSocket code"; fi
say "ours: NEEDED [$o_needed], libutp.so.0 -> $o_resolved, utp_* imported"
r_needed=$(needed "$ra")
if [ "$REF_KIND" = deps ]; then
    [[ " $r_needed " != *libutp* ]] || die "real: NEEDED [$r_needed] has a libutp"
    grep -q ' T utp_process_udp$' "$WORK/nm-D-real" || die "real: utp_process_udp not defined inside"
    grep -q 'UTPSocket::' "$WORK/nm-real" || die "real: no libutp UTPSocket code inside"
    say "real: NEEDED [$r_needed], libutp's C++ inside (UTPSocket, utp_process_udp defined)"
else
    r_resolved=$(ldd "$ra" | awk '$1 ~ /^libutp/ {print $3}')
    [ "$(readlink -f "$r_resolved")" = "$(readlink -f "$REF/lib/libutp.so")" ] ||
        die "real: libutp -> '$r_resolved' (want $REF/lib/libutp.so)"
    say "real: NEEDED [$r_needed], libutp.so -> $r_resolved"
fi
# What the package's loader picks, and what the process then has mapped.
for b in real ours; do
    picked=$(cd "$WORK/$b" && node -p "require('node-gyp-build').path('.')")
    [ "$picked" = "$WORK/$b/build/Release/utp_native.node" ] || die "$b: node-gyp-build picks $picked"
    maps=$(cd "$WORK/$b" && node -e "require('./'); process.stdout.write(require('fs').readFileSync('/proc/self/maps', 'utf8'))" |
           awk '$6 ~ /libutp|utp_native/ {print $6}' | sort -u | tr '\n' ' ')
    if [ "$b" = real ] && [ "$REF_KIND" = deps ] && [[ "$maps" == *libutp* ]]; then
        die "real: the process maps a libutp: $maps"
    fi
    if [ "$b" = ours ] && [[ "$maps" != *"$REL/libutp.so"* ]]; then
        die "ours: the process does not map $REL/libutp.so: $maps"
    fi
    say "$b: node-gyp-build loads build/Release/utp_native.node; mapped: $maps"
done

# ------------------------------------------------------------------ tests
# run_tape BUILD FILE TIMEOUT: writes $WORK/BUILD-FILE.{out,rc,secs}.
run_tape() {
    local b=$1 t=$2 limit=$3 s rc
    s=$(date +%s)
    (cd "$WORK/$b" && exec timeout -k 5 "$limit" node "test/$t.js") >"$WORK/$b-$t.out" 2>&1 &
    echo $! >"$WORK/pids/$b-$t"
    rc=0
    wait $! || rc=$?
    rm -f "$WORK/pids/$b-$t"
    echo "$rc" >"$WORK/$b-$t.rc"
    echo $(( $(date +%s) - s )) >"$WORK/$b-$t.secs"
}
mkdir -p "$WORK/pids"
say "running test/timeouts.js of both builds in the background (~1-2 min)"
for b in real ours; do
    run_tape "$b" timeouts 240 &
    BG+=($!)
done
for t in net sockets udp; do
    for b in real ours; do
        say "$b: test/$t.js"
        run_tape "$b" "$t" 120
    done
done
say "waiting for test/timeouts.js"
for p in "${BG[@]}"; do wait "$p" || true; done
BG=()

# Per case (a tape('name') block): passed if it has an `ok` and no `not ok`.
# Cases are read from the TAP output up to its plan line (1..N); the
# expected number is the count of tape( calls in the unmodified test file.
cases() {  # OUT -> lines "PASS|FAIL<TAB>case name"
    awk '
        /^1\.\./ { exit }
        /^# / { if (name != "") print (bad || !good ? "FAIL" : "PASS") "\t" name
                name = substr($0, 3); good = 0; bad = 0; next }
        /^ok / { good = 1 }
        /^not ok / { bad = 1 }
        END { if (name != "") print (bad || !good ? "FAIL" : "PASS") "\t" name }' "$1"
}
FAILED=0
declare -A TOT
printf '\n%-12s %-5s %8s %8s %7s %5s %6s\n' file build cases "ok" "not ok" exit time
for t in "${FILES[@]}"; do
    want=$(grep -c '^tape(' "$WORK/real/test/$t.js")
    for b in real ours; do
        out="$WORK/$b-$t.out"
        cases "$out" >"$WORK/$b-$t.cases"
        npass=$(grep -c '^PASS' "$WORK/$b-$t.cases" || true)
        nok=$(grep -c '^ok ' "$out" || true)
        nbad=$(grep -c '^not ok ' "$out" || true)
        rc=$(cat "$WORK/$b-$t.rc")
        printf '%-12s %-5s %8s %8s %7s %5s %5ss\n' "$t.js" "$b" "$npass/$want" "$nok" "$nbad" "$rc" "$(cat "$WORK/$b-$t.secs")"
        TOT[$b-cases]=$(( ${TOT[$b-cases]:-0} + npass ))
        TOT[$b-want]=$(( ${TOT[$b-want]:-0} + want ))
        TOT[$b-ok]=$(( ${TOT[$b-ok]:-0} + nok ))
        TOT[$b-bad]=$(( ${TOT[$b-bad]:-0} + nbad ))
        if [ "$rc" != 0 ] || [ "$nbad" != 0 ] || [ "$npass" != "$want" ] || grep -q '^FAIL' "$WORK/$b-$t.cases"; then
            FAILED=1
            {
                echo "--- $b: test/$t.js (exit $rc; 124/137 = timed out):"
                grep '^FAIL' "$WORK/$b-$t.cases" | sed 's/^/  case /' || true
                grep -A12 '^not ok' "$out" | head -40 || true
                [ "$nbad" != 0 ] || tail -15 "$out"
            } >"$WORK/$b-$t.why"
        fi
    done
    if ! diff <(sort "$WORK/real-$t.cases") <(sort "$WORK/ours-$t.cases") >"$WORK/$t.diff"; then
        FAILED=1
        { echo "--- test/$t.js: cases differ (< real, > ours):"; cat "$WORK/$t.diff"; } >>"$WORK/ours-$t.why"
    fi
done
for b in real ours; do
    printf '%-12s %-5s %8s %8s %7s\n' total "$b" "${TOT[$b-cases]}/${TOT[$b-want]}" "${TOT[$b-ok]}" "${TOT[$b-bad]}"
done
echo "(real = $REAL_DESC; ours = $REL/libutp.so; cases = tape tests, ok = assertions)"
cat "$WORK"/*.why 2>/dev/null >&2 || true
say "$(( $(date +%s) - START )) s"
[ "$FAILED" = 0 ] || die "utp-native's tests do not all pass the same with both builds"
say "all ${TOT[ours-cases]} cases pass with both builds"
