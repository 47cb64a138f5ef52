#!/usr/bin/env bash
# Build, HERE (no GPU needed), everything scripts/gpu-check.sh runs on a GPU machine, and copy
# it into the git-ignored .device/ folder (carried to the GPU machine with the working tree):
#   .device/engine-tests  the engine's unit tests with --features cuda (parity, GPU tests,
#                         the ignored GPU benchmark)
#   .device/latentd, .device/latentctl  release builds with --features cuda, no JACK or
#                         PipeWire linked (the GPU machine plays into the null output)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
mkdir -p .device
test_bin=$(cargo test -p latentd-engine --features cuda --release --lib --no-run \
    --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "latentd_engine":
        print(m["executable"])' | tail -1)
[ -n "$test_bin" ] || { echo "no engine test binary built" >&2; exit 1; }
cp "$test_bin" .device/engine-tests
cargo build --release -p latentd --no-default-features --features cuda
cargo build --release -p latentctl --no-default-features --features cuda
cp "$CARGO_TARGET_DIR/release/latentd" "$CARGO_TARGET_DIR/release/latentctl" .device/
ls -l .device
