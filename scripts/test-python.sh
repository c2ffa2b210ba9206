#!/usr/bin/env bash
# Tests of the Python binding (bindings-python, distribution `utp-socket`,
# import name `utp`), as users get it:
#   1. builds the wheel with `maturin build --release` (abi3: one wheel for
#      CPython 3.8 and later) and reports its size;
#   2. installs it into a clean venv and runs the pytest suite there
#      (bindings-python/tests: sockets, asyncio, errors, timeouts, Ctrl-C,
#      interpreter exit, interop with real libutp's ucat and utpcat), then
#      mypy's stubtest over the installed package;
#   3. `pip install ./bindings-python` (the README's command, the sdist
#      path) into a second clean venv and runs the README example and the
#      examples in examples/python there.
# Loopback only. Needs python3 with venv and a Rust toolchain; pip fetches
# maturin, pytest and mypy from PyPI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/test-python.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
PY="${PYTHON:-python3}"

# Peers for the interop tests.
bash scripts/build-libutp-ref.sh --quiet
cargo build --release --example utpcat --quiet

echo "test-python: building the wheel"
"$PY" -m venv "$WORK/build"
"$WORK/build/bin/pip" install --quiet "maturin==1.16.0"
(cd bindings-python && "$WORK/build/bin/maturin" build --release --quiet --out "$WORK/wheels")
wheel=$(ls "$WORK"/wheels/utp_socket-*.whl)
echo "test-python: $(basename "$wheel"): $(stat -c %s "$wheel") bytes"

echo "test-python: installing it into a clean venv"
"$PY" -m venv "$WORK/test"
"$WORK/test/bin/pip" install --quiet "$wheel" "pytest==9.2.0" "mypy==2.4.1" "typing_extensions==4.16.0"
# The tests must see the installed package, not the source tree.
(cd bindings-python/tests && "$WORK/test/bin/python" -m pytest -q -p no:cacheprovider)
echo "test-python: stubtest"
(cd "$WORK" && "$WORK/test/bin/python" -m mypy.stubtest utp)

echo "test-python: pip install ./bindings-python (the README's command) into a clean venv"
"$PY" -m venv "$WORK/readme"
(
    # shellcheck disable=SC1091
    source "$WORK/readme/bin/activate"
    # The README's two commands, as written, from the repository root.
    pip install ./bindings-python
    timeout 60 python3 examples/python/hello.py | grep -qx "hello over uTP"
    cd "$WORK"
    timeout 120 python "$ROOT/examples/python/echo_server_asyncio.py" --self-test
    head -c 3000000 /dev/urandom > "$WORK/file.bin"
    timeout 60 python "$ROOT/examples/python/receive_file.py" 127.0.0.1 0 "$WORK/got.bin" --port-file "$WORK/port" &
    receiver=$!
    for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
    timeout 60 python "$ROOT/examples/python/send_file.py" 127.0.0.1 "$(cat "$WORK/port")" "$WORK/file.bin"
    wait "$receiver"
    cmp "$WORK/file.bin" "$WORK/got.bin"
)
echo "test-python: all passed"
