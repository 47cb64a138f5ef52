#!/usr/bin/env bash
# Counts ONNX Runtime's heap allocation calls per engine tick (one batched DiT step at
# B = 4 and one windowed decode), with an LD_PRELOAD shim (scripts/count-mallocs.c,
# compiled here with cc) whose counters engine/examples/ort_mallocs.rs reads right around
# each call, under assert_no_alloc so latentd's own code is known to allocate nothing there.
# These allocations happen on the engine thread, never in the audio callback; they are
# measured because allocator work and page faults show up as tick jitter.
#
#   scripts/bench-ort-mallocs.sh [BUNDLE_DIR] [FRAMES=250] [TICKS=50]
#
# Without BUNDLE_DIR it writes the tiny test bundle (make_test_bundle.py --preset tiny).
# Needs cc, python3 + onnx + numpy (for the bundle) and .ort/libonnxruntime.so
# (scripts/setup.sh) or ORT_DYLIB_PATH. Results: docs/PERFORMANCE.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

bundle="${1:-}"
if [[ -z "$bundle" ]]; then
    bundle="$work/tiny"
    python3 tools/bundles/make_test_bundle.py --preset tiny --out "$bundle"
fi
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$root/.ort/libonnxruntime.so}"
[[ -f "$ORT_DYLIB_PATH" ]] || { echo "bench-ort-mallocs: no ONNX Runtime library at $ORT_DYLIB_PATH (run scripts/setup.sh)" >&2; exit 2; }

cc -O2 -shared -fPIC -o "$work/count-mallocs.so" scripts/count-mallocs.c
cargo build -q -p latentd-engine --example ort_mallocs
LD_PRELOAD="$work/count-mallocs.so" "${CARGO_TARGET_DIR:-$root/target}/debug/examples/ort_mallocs" "$bundle" "${2:-250}" "${3:-50}"
