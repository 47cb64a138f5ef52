#!/usr/bin/env bash
# The external knob-to-ear bench of docs/PERFORMANCE.md, end to end: a private dummy JACK
# server (realtime when the machine allows it), latentd (release) with the near-playhead
# repatch on, then off, each measured by `latentctl bench knob-to-ear`, quiet and under a
# 10,000 messages/s flood of another knob. Prints, per run, the latency percentiles beside
# every xrun count there is (the daemon's /status, the bench's capture client, the JACK
# server's own log) and, when cyclictest (rt-tests) is installed, how often a plain
# SCHED_FIFO thread woke more than one period late meanwhile; then the throughput
# must-show's verdict (flood p99 within one period of quiet p99, no xrun during the flood).
# Reports (JSON) go to $OUT (default: target/bench-knob-to-ear/).
#
#   [REPEAT=N] [MODES="repatch no-repatch"] [MODEL=DIR] [LOOP_S=S] [LATENTD=PATH] ./scripts/bench-knob-to-ear.sh [COUNT] [PERIOD]
#
# LATENTD=PATH benches that latentd binary instead of the one built here (an A/B of two builds
# on the same machine minutes apart).
#
# MODEL runs latentd on that model bundle (`--model DIR`, e.g. models/gm-tiny) instead of the
# built-in engine. LOOP_S sets the loop's length (`--loop-seconds`; the daemon's default
# otherwise): a neural DiT's tick grows with the loop, and the model figures are for 10 s.
#
# REPEAT runs each quiet/flood pair N times on the same daemon; the verdict then pools the
# changes of all runs (p99 of 50 changes is their maximum; pooled runs give a real p99).
#
# Scheduling: jackd runs `-R -P 70` when `chrt -f` works here (root or an rtprio limit),
# so libjack gives the clients' process threads (latentd's, the capture's) SCHED_FIFO 65;
# everything else (latentd's engine and OSC threads, the flood) stays at normal priority.
# Otherwise jackd runs --no-realtime and the script says so. NO_RT=1 forces the latter.
#
# Every process started here is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-50}
period=${2:-128}
rate=48000
target=${CARGO_TARGET_DIR:-target}
out=${OUT:-$target/bench-knob-to-ear}
mkdir -p "$out"

cargo build --release -p latentd -p latentctl
latentd=${LATENTD:-$target/release/latentd}
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

if [[ ${NO_RT:-0} != 1 ]] && chrt -f 1 true 2>/dev/null; then
    jack_sched=(-R -P 70)
else
    jack_sched=(--no-realtime)
    echo "note: no realtime scheduling here (chrt -f fails, or NO_RT=1): jackd runs" \
        "--no-realtime, so xruns and tails measure the machine's scheduling" >&2
fi
jackd "${jack_sched[@]}" -n "$JACK_DEFAULT_SERVER" -d dummy -r $rate -p "$period" \
    >"$out/jackd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
if grep -q "starting in realtime mode" "$out/jackd.log"; then
    jack_mode="realtime ($(grep -o 'priority [0-9]*' "$out/jackd.log"))"
else
    jack_mode="not realtime"
    [[ ${jack_sched[0]} == -R ]] && echo "note: jackd -R did not get realtime scheduling" >&2
fi
preempt=$(cat /sys/kernel/debug/sched/preempt 2>/dev/null ||
    dmesg 2>/dev/null | grep -o 'Dynamic Preempt: [a-z]*' | tail -1 || true)
echo "machine: $(nproc) CPUs, $(uname -r), preemption: ${preempt:-unknown}; jackd $jack_mode," \
    "dummy $rate Hz / $period frames"

# Lines of jackd's log since line $1: late driver wake-ups, and clients not finished.
jack_xruns() {
    tail -n +"$(($1 + 1))" "$out/jackd.log" | awk '
        /TimedDriver::Process XRun/ { driver++ }
        /was not finished/ { clients++; who[$4 " (" $NF ")"]++ }
        END { printf "{\"driver_late\": %d, \"clients_late\": %d, \"who\": \"", driver, clients
              sep = ""; for (w in who) { printf "%s%d %s", sep, who[w], w; sep = ", " }
              printf "\"}" }'
}

has_cyclictest=0
command -v cyclictest >/dev/null && [[ $jack_mode == realtime* ]] && has_cyclictest=1
period_us=$((period * 1000000 / rate))
# Run one bench (args after $1 = run name) with the machine probes around it.
measured() {
    local name=$1
    shift
    local lines ct=""
    lines=$(wc -l <"$out/jackd.log")
    if ((has_cyclictest)); then
        # A bare SCHED_FIFO 60 thread (below the audio threads) waking every ms.
        cyclictest -m -p 60 -t 1 -i 1000 -q -h 20000 --histfile="$out/$name.cyclictest" \
            >/dev/null 2>&1 &
        ct=$!
        pids+=("$ct")
    fi
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    "$latentctl" --port $osc_port bench knob-to-ear --count "$count" "$@" --out "$out/$name.json"
    local probe="null"
    if [[ -n $ct ]]; then
        kill -INT "$ct"
        wait "$ct" || true
        unset 'pids[${#pids[@]}-1]'
        probe=$(awk -v p=$period_us '/^# Total:/ { n = $3 + 0 } /^# Max Latencies:/ { m = $4 + 0 }
            /^# Histogram Overflows:/ { late += $4 } !/^#/ && $1 >= p { late += $2 }
            END { printf "{\"wakeups\": %d, \"max_us\": %d, \"later_than_period\": %d}", n, m, late }' \
            "$out/$name.cyclictest")
    fi
    printf '{"load_before": %s, "load_after": %s, "jackd": %s, "fifo_probe": %s}\n' \
        "$load" "$(cut -d' ' -f1 /proc/loadavg)" "$(jack_xruns "$lines")" "$probe" \
        >"$out/$name.machine.json"
}

osc_port=17770
repeat=${REPEAT:-1}
modes=${MODES:-repatch no-repatch}
for mode in $modes; do
    flags=()
    [[ $mode == no-repatch ]] && flags+=(--no-repatch)
    [[ -n ${MODEL:-} ]] && flags+=(--model "$MODEL")
    [[ -n ${LOOP_S:-} ]] && flags+=(--loop-seconds "$LOOP_S")
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
    echo "latentd threads not SCHED_OTHER: $(ps -L -o tid=,cls=,rtprio=,comm= -p "$daemon" |
        awk '$2 != "TS" { printf "%s%s %s %s", s, $4, $2, $3; s = ", " }
            END { if (s == "") printf "none" }')"
    for rep in $(seq "$repeat"); do
        echo "== $mode, quiet ($rep/$repeat)"
        measured "$mode-quiet-$rep"
        echo "== $mode, flood 10000/s of /knob/denoise for 10 s ($rep/$repeat)"
        measured "$mode-flood-$rep" --flood-rate 10000 --flood-seconds 10 --flood-knob denoise
    done
    "$latentctl" --port $osc_port status
    kill "$daemon"
    wait "$daemon" || true
    unset 'pids[${#pids[@]}-1]'
    rm -rf "$state"
done

python3 - "$out" "$period" "$rate" "$repeat" $modes <<'EOF'
import json, math, sys
out, period, rate, repeat, modes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
period_ms = period * 1000 / rate
def rank(v, p):  # nearest rank, as latentctl's reports
    v = sorted(v)
    return v[min(max(math.ceil(p / 100 * len(v)), 1), len(v)) - 1]
print(f"\nsummary (ms; xruns counted over each run; period {period_ms:.2f} ms)")
print(f"{'run':<24} {'p50':>6} {'p95':>6} {'p99':>6} {'daemon':>6} {'capture':>7} "
      f"{'jackd drv/cli':>13} {'fifo>period':>11} {'load':>9}  jackd: late clients")
for mode in modes:
    pool = {(run, edge): [] for run in ("quiet", "flood") for edge in ("all", "to_sound")}
    xruns = {"quiet": 0, "flood": 0}
    floods = []
    for rep in range(1, repeat + 1):
        for run in ("quiet", "flood"):
            name = f"{mode}-{run}-{rep}"
            r = json.load(open(f"{out}/{name}.json"))
            m = json.load(open(f"{out}/{name}.machine.json"))
            s, d, j, p = r["latency"]["all"], r["daemon"], m["jackd"], m["fifo_probe"]
            xr = d["xruns_after"] - d["xruns_before"]
            xruns[run] += xr
            for c in r["changes"]:
                if c["clean"] and c["latency_ms"] is not None and (run == "quiet" or c["during_flood"]):
                    pool[run, "all"].append(c["latency_ms"])
                    if c["edge"] == "to_sound":
                        pool[run, "to_sound"].append(c["latency_ms"])
            if r["flood"]:
                floods.append(r["flood"])
            probe = f"{p['later_than_period']}/{p['wakeups']}" if p else "-"
            print(f"{name:<24} {s['p50_ms']:>6.1f} {s['p95_ms']:>6.1f} {s['p99_ms']:>6.1f} {xr:>6} "
                  f"{r['jack']['capture_xruns']:>7} "
                  f"{str(j['driver_late']) + '/' + str(j['clients_late']):>13} {probe:>11} "
                  f"{m['load_before']:>4}-{m['load_after']:<4}  {j['who'] or '-'}")
    sent = sum(x["sent"] for x in floods)
    fails = sum(x["fails"] for x in floods)
    print(f"  {mode}: {len(floods)} floods of 10 s, {sent} messages, {fails} /fail; pooled "
          f"p50/p95/p99 ms, quiet -> during the floods:")
    for edge, what in (("to_sound", "audible_first (gains 0->1, first changed sample)"),
                       ("all", "all changes (gains 1->0 include the 25 ms fade)")):
        q, f = pool["quiet", edge], pool["flood", edge]
        rise = rank(f, 99) - rank(q, 99)
        print(f"    {what:<50} {rank(q, 50):.1f}/{rank(q, 95):.1f}/{rank(q, 99):.1f} ({len(q)}) -> "
              f"{rank(f, 50):.1f}/{rank(f, 95):.1f}/{rank(f, 99):.1f} ({len(f)}): p99 {rise:+.2f} ms, "
              f"{'within' if rise <= period_ms else 'MORE than'} one period")
    print(f"  {mode}: daemon xruns: quiet runs {xruns['quiet']}, flood runs {xruns['flood']} "
          f"({'none' if xruns['flood'] == 0 else 'NOT none'} under the flood)")
EOF
