#!/usr/bin/env bash
# Tests of the Node.js binding (bindings-node, npm package `utp-socket`) as
# users get it:
#   1. `npm pack` (its prepack step builds the addon with cargo) and the
#      tarball installed into a clean folder, beside utp-native@2.5.3 (real
#      libutp, for interop) and TypeScript;
#   2. the node:test suite (bindings-node/test) against that install;
#   3. `tsc --noEmit` over the examples, with the package's index.d.ts;
#   4. utp-native 2.5.3's own tape tests (test/net.js, sockets.js, udp.js,
#      timeouts.js), unmodified, with their `require('../')` resolving to
#      this package: every case must pass;
#   5. the examples in examples/node (echo, send and receive a file).
# Loopback only. npm fetches utp-native, tape and typescript.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/test-node.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

echo "test-node: npm pack"
(cd bindings-node && npm pack --silent --pack-destination "$WORK" >/dev/null)
tarball=$(ls "$WORK"/utp-socket-*.tgz)
tar tzf "$tarball" >"$WORK/contents"
grep -qx 'package/utp_node.linux-x64.node' "$WORK/contents" || { echo "test-node: FAIL: the addon is not in the tarball" >&2; exit 1; }
echo "test-node: $(basename "$tarball"): $(stat -c %s "$tarball") bytes"

P="$WORK/project"
mkdir -p "$P"
echo '{"name":"utp-socket-tests","version":"1.0.0","private":true}' >"$P/package.json"
(cd "$P" && npm install --silent "$tarball" utp-native@2.5.3 tape@4.17.0 typescript@5.9.3 @types/node@20)
cp -r bindings-node/test "$P/test"

echo "test-node: node:test suite"
(cd "$P" && node --test --test-reporter=spec test/)

echo "test-node: tsc --noEmit over the examples"
mkdir -p "$P/examples"
cp examples/node/*.js "$P/examples/"
cp bindings-node/tsconfig.examples.json "$P/tsconfig.json"
(cd "$P" && npx --no-install tsc --noEmit -p tsconfig.json)

echo "test-node: utp-native 2.5.3's own tests against this package"
(cd "$WORK" && npm pack --silent utp-native@2.5.3 >/dev/null && tar xzf utp-native-2.5.3.tgz)
U="$P/utp-native-suite"
mkdir -p "$U"
cp -r "$WORK/package/test" "$U/test"
echo "module.exports = require('utp-socket')" >"$U/index.js"
total_pass=0
total_fail=0
for t in net sockets udp timeouts; do
    out="$WORK/tape-$t.out"
    set +e
    (cd "$U" && timeout 300 node "test/$t.js") >"$out" 2>&1
    rc=$?
    set -e
    pass=$(grep -c '^ok ' "$out" || true)
    fail=$(grep -c '^not ok ' "$out" || true)
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
    echo "test-node: utp-native test/$t.js: $pass ok, $fail not ok (exit $rc)"
    if [ "$rc" != 0 ] || [ "$fail" != 0 ]; then
        grep -B2 -A12 '^not ok' "$out" | head -40 >&2 || tail -20 "$out" >&2
        echo "test-node: FAIL: utp-native's test/$t.js" >&2
        exit 1
    fi
done
echo "test-node: utp-native's suite: $total_pass assertions ok, $total_fail failed"

echo "test-node: examples"
(
    cd "$P"
    timeout 30 node examples/echo_server.js --self-test | grep -qx "hello over uTP from Node"
    head -c 3000000 /dev/urandom >"$WORK/file.bin"
    timeout 60 node examples/receive_file.js 0 "$WORK/got.bin" "$WORK/port" >/dev/null &
    receiver=$!
    for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
    timeout 60 node examples/send_file.js 127.0.0.1 "$(cat "$WORK/port")" "$WORK/file.bin" >/dev/null
    wait "$receiver"
    cmp "$WORK/file.bin" "$WORK/got.bin"
)
echo "test-node: all passed"
