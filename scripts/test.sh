#!/usr/bin/env bash
# Runs every test of the project. The README's test command.
#   1. Rust: engine unit and property tests, simulator scenarios, runtime
#      end-to-end tests, interoperability with real libutp (built from the
#      libutp-sys crate by scripts/build-libutp-ref.sh), the C ABI's Rust tests.
#      Then `cargo doc` with warnings as errors (broken or private links).
#   2. C ABI: header regeneration check, layout asserts in C and C++, libutp's
#      own ucat.c built against our library talking to real libutp, misuse
#      tests under valgrind.
#   3. The C library as users install it (scripts/test-c-install.sh):
#      install into a prefix, examples built with pkg-config, shared and
#      static, run with no extra environment.
#   4. The Python binding (scripts/test-python.sh): wheel built and tested
#      in a clean venv, `pip install ./bindings-python`, the examples.
#   5. The Node.js binding (scripts/test-node.sh): packed, installed in a
#      clean folder, its tests, utp-native's own tests, the examples.
#   6. utp-native's own C++ addon (binding.cc, the libutp C API through
#      N-API) compiled against real libutp and against include/utp.h with
#      our libutp.so, its tape tests run with both builds: all 29 cases must
#      pass the same (scripts/test-utp-native-c.sh).
#   7. Every command the README shows, on a fresh copy of the repository
#      (scripts/test-readme.sh).
#   8. The benchmark harness in smoke mode (bench/run.sh --smoke): every
#      benchmark role runs once with small sizes and must move its data
#      byte-exact; slow numbers never fail it. Without root, the veth and
#      testbed parts are skipped.
#   9. The cross-language matrix (scripts/test-matrix.sh): Rust, C on our
#      libutp, the threaded C API, Python, Node and real libutp, 5 MB each
#      ordered pair; then each of ours through a lossy relay.
#  10. The fuzz targets, 60 s each from the committed corpora
#      (scripts/test-fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --release
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
bash scripts/test-ffi.sh
bash scripts/test-c-install.sh
bash scripts/test-python.sh
bash scripts/test-node.sh
bash scripts/test-utp-native-c.sh
bash scripts/test-readme.sh
bash bench/run.sh --smoke
bash scripts/test-matrix.sh
bash scripts/test-fuzz.sh
