#!/usr/bin/env bash
# The external knob-to-ear bench of docs/PERFORMANCE.md, end to end: a private dummy JACK
# server, latentd (release) with the near-playhead repatch on, then off, each measured by
# `latentctl bench knob-to-ear`, quiet and under a 10,000 messages/s flood of another knob.
# Reports (JSON) go to $OUT (default: target/bench-knob-to-ear/).
#
#   ./scripts/bench-knob-to-ear.sh [COUNT] [PERIOD]
#
# Every process started here is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-50}
period=${2:-128}
target=${CARGO_TARGET_DIR:-target}
out=${OUT:-$target/bench-knob-to-ear}
mkdir -p "$out"

cargo build --release -p latentd -p latentctl
latentd=$target/release/latentd
latentctl=$target/release/latentctl

export JACK_DEFAULT_SERVER=latentd-bench-$$
export JACK_NO_START_SERVER=1
pids=()
cleanup() {
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

jackd --no-realtime -n "$JACK_DEFAULT_SERVER" -d dummy -r 48000 -p "$period" \
    >"$out/jackd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done

osc_port=17770
for mode in repatch no-repatch; do
    flags=()
    [[ $mode == no-repatch ]] && flags+=(--no-repatch)
    state=$(mktemp -d)
    "$latentd" --audio jack --osc 127.0.0.1:$osc_port --oscquery-port 0 \
        --state "$state/state.toml" --log-level warn "${flags[@]}" \
        >"$out/latentd-$mode.log" 2>&1 &
    daemon=$!
    pids+=("$daemon")
    for _ in $(seq 300); do
        "$latentctl" --port $osc_port status >/dev/null 2>&1 && break
        sleep 0.1
    done
    sleep 2 # let the lead settle
    echo "== $mode, quiet"
    "$latentctl" --port $osc_port bench knob-to-ear --count "$count" \
        --out "$out/$mode-quiet.json"
    echo "== $mode, flood 10000/s of /knob/denoise for 10 s"
    "$latentctl" --port $osc_port bench knob-to-ear --count "$count" \
        --flood-rate 10000 --flood-seconds 10 --flood-knob denoise \
        --out "$out/$mode-flood.json"
    "$latentctl" --port $osc_port status
    kill "$daemon"
    wait "$daemon" || true
    unset 'pids[${#pids[@]}-1]'
    rm -rf "$state"
done
