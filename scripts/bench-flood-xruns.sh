#!/usr/bin/env bash
# Whose xruns? Alternating 10 s windows, quiet and under a 10,000 messages/s knob flood
# (`latentctl bench flood`), with different things in a realtime dummy JACK graph, counting
# jackd's own xrun lines per window: the driver waking late, and clients not finished (by
# name and state). Compares latentd against a trivial client and against no client, and
# a bare SCHED_FIFO thread with no JACK at all (cyclictest, rt-tests). See
# docs/PERFORMANCE.md, "Throughput must-show with a realtime jackd".
#
#   ./scripts/bench-flood-xruns.sh [PAIRS] [SCENARIO...]
#
# Scenarios (default: all): none (jackd alone), simple (jack_simple_client), latentd
# (latentd as the JACK client), probe (no jackd; cyclictest -p 70 -t 2 -i 1000). Except
# in `latentd`, the flood goes to a `latentd --audio null`, which does the same OSC and
# engine work outside the graph. Needs realtime scheduling (root or an rtprio limit).
# Every process started here is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-3}
shift || true
scenarios=("$@")
((${#scenarios[@]})) || scenarios=(none simple latentd probe)
target=${CARGO_TARGET_DIR:-target}
out=${OUT:-$target/bench-flood-xruns}
mkdir -p "$out"
chrt -f 1 true 2>/dev/null || { echo "needs realtime scheduling (chrt -f fails here)" >&2; exit 2; }

cargo build --release -p latentd -p latentctl
latentd=$target/release/latentd
latentctl=$target/release/latentctl
export JACK_NO_START_SERVER=1
osc_port=17780
pids=()
stop_all() {
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    pids=()
}
trap stop_all EXIT

# xrun lines of $1 after line $2: "driver clients who".
jack_xruns() {
    tail -n +"$(($2 + 1))" "$1" | awk '
        /TimedDriver::Process XRun/ { driver++ }
        /was not finished/ { clients++; who[$4 " (" $NF ")"]++ }
        END { printf "%d %d ", driver, clients; sep = ""
              for (w in who) { printf "%s%d %s", sep, who[w], w; sep = ", " } }'
}

daemon_xruns() { "$latentctl" --port $osc_port status | awk '$1 == "xruns" { print $2 }'; }

printf "%-8s %-6s %8s %8s %7s %6s  %s\n" scenario window driver clients daemon load \
    "late clients (jackd) / late FIFO wake-ups (probe)"
for scenario in "${scenarios[@]}"; do
    log=$out/$scenario-jackd.log
    : >"$log"
    if [[ $scenario != probe ]]; then
        export JACK_DEFAULT_SERVER=latentd-xruns-$$
        jackd -R -P 70 -n "$JACK_DEFAULT_SERVER" -d dummy -r 48000 -p 128 >"$log" 2>&1 &
        pids+=($!)
        for _ in $(seq 100); do jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
    fi
    audio=null
    [[ $scenario == latentd ]] && audio=jack
    "$latentd" --audio $audio --osc 127.0.0.1:$osc_port --oscquery-port 0 \
        --state "$out/$scenario-state.toml" --log-level warn >"$out/$scenario-latentd.log" 2>&1 &
    pids+=($!)
    if [[ $scenario == simple ]]; then
        jack_simple_client >/dev/null 2>&1 &
        pids+=($!)
    fi
    for _ in $(seq 300); do
        "$latentctl" --port $osc_port status >/dev/null 2>&1 && break
        sleep 0.1
    done
    sleep 3
    for pair in $(seq "$pairs"); do
        for window in quiet flood; do
            lines=$(wc -l <"$log")
            x0=$(daemon_xruns)
            load=$(cut -d' ' -f1 /proc/loadavg)
            ct=""
            if [[ $scenario == probe ]]; then
                cyclictest -m -p 70 -t 2 -i 1000 -q -h 20000 \
                    --histfile="$out/probe-$window-$pair.hist" >/dev/null 2>&1 &
                ct=$!
            fi
            if [[ $window == flood ]]; then
                "$latentctl" --port $osc_port bench flood --rate 10000 --seconds 10 \
                    >"$out/$scenario-flood-$pair.txt"
            else
                sleep 10
            fi
            if [[ -n $ct ]]; then
                kill -INT "$ct"
                wait "$ct" || true
                read -r driver clients who < <(echo "0 0 $(awk '
                    /^# Total:/ { n = $3 + $4 } /^# Max Latencies:/ { m = ($4 > $5 ? $4 : $5) + 0 }
                    /^# Histogram Overflows:/ { late += $4 + $5 } !/^#/ && $1 >= 2667 { late += $2 + $3 }
                    END { printf "%d of %d later than 2.67 ms, max %d us", late, n, m }' \
                    "$out/probe-$window-$pair.hist")") || true
            else
                read -r driver clients who < <(jack_xruns "$log" "$lines") || true
            fi
            printf "%-8s %-6s %8s %8s %7s %6s  %s\n" "$scenario" "$window" "$driver" \
                "$clients" "$(($(daemon_xruns) - x0))" "$load" "${who:--}"
        done
    done
    stop_all
done
grep -h "^flood:" "$out"/*-flood-*.txt | sort | uniq -c | sort -rn | head -3
