#!/usr/bin/env bash
# The GPU check, run ON a GPU machine from the repository root. Builds nothing: it runs the
# binaries scripts/build-gpu-bundle.sh put in .device/, and writes everything to $OUT
# (default ./gpu-check-out):
#   card.txt        nvidia-smi's view of the card and driver
#   parity.txt      the CUDA parity and latency tests (LATENTD_REQUIRE_GPU=1: no device = fail)
#   bench.jsonl     tick and decode times from CUDA events, host syncs per tick, at depth 4/8,
#                   steps 8/16, loops of 60 and 240 s
#   golden-cuda.json, golden-cpu.json  knob-to-ear on the null output, CUDA and CPU engines
# Usage: scripts/gpu-check.sh   (timeout per step: GPU_CHECK_STEP_TIMEOUT, default 240 s)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check-out}"
mkdir -p "$OUT"
T="${GPU_CHECK_STEP_TIMEOUT:-240}"
for b in engine-tests latentd latentctl; do
    [ -x ".device/$b" ] || { echo "missing .device/$b: run scripts/build-gpu-bundle.sh first" >&2; exit 2; }
done
status=0
(nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv) >"$OUT/card.txt" 2>&1
export LATENTD_REQUIRE_GPU=1
timeout "$T" .device/engine-tests model::cuda --test-threads=1 --nocapture >"$OUT/parity.txt" 2>&1 || status=1
timeout "$T" .device/engine-tests gpu_benchmark --ignored --test-threads=1 --nocapture 2>"$OUT/bench.stderr" |
    sed -n 's/^BENCH //p' >"$OUT/bench.jsonl" || status=1
timeout "$T" .device/latentctl golden --realtime --audio null --engine builtin-cuda \
    --out "$OUT/golden-cuda.json" >"$OUT/golden-cuda.txt" 2>&1 || status=1
timeout "$T" .device/latentctl golden --realtime --audio null --engine builtin-cpu \
    --out "$OUT/golden-cpu.json" >"$OUT/golden-cpu.txt" 2>&1 || status=1
tail -n 3 "$OUT/parity.txt"; cat "$OUT/bench.jsonl"; cat "$OUT/golden-cuda.txt"
exit $status
