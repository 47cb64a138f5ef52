#!/usr/bin/env bash
# The PipeWire RTP route of docs/operations.md ("Networked audio"), measured on one machine:
# two network namespaces joined by a veth pair (A 10.203.0.1, B 10.203.0.2, multicast
# routed), a private PipeWire graph in each (D-Bus, pipewire with Debian's minimal.conf minus
# its ALSA nodes, WirePlumber, a null sink). A runs latentd (--engine off, a 440 Hz tone)
# into its null sink and module-rtp-sink (a client process) sends the sink's monitor to
# 224.0.0.56:46000; B runs module-rtp-source with sess.latency.msec = $LATENCY_MS (default
# 100, PipeWire's default), which plays into B's null sink. A Python client in B's namespace
# records both null sinks (pw-record, each chunk stamped on arrival), sends
# /transport/pause, then /transport/play to latentd across the veth, and prints
# control-to-ear at A and at B and their difference (what the route adds). With DROP=1 it
# then takes A's veth down for 2 s, brings it back and measures again.
#
#   [LATENCY_MS=100] [EDGES=6] [DROP=1] [LATENTD=path] sudo ./scripts/bench-pipewire-rtp.sh
#
# Needs root (ip netns), pipewire, wireplumber, dbus, python3. Every process started here
# is stopped by its PID and the namespaces are deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
latency_ms=${LATENCY_MS:-100}
edges=${EDGES:-6}
latentd=${LATENTD:-target/debug/latentd}
[[ -x $latentd ]] || { echo "no latentd at $latentd (cargo build -p latentd, or LATENTD=path)" >&2; exit 1; }
latentd=$(realpath "$latentd")
work=$(mktemp -d)
ns_a=latentd-rtp-a-$$ ns_b=latentd-rtp-b-$$
pids=()
cleanup() {
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    for d in "$work"/rt-*; do [[ -f $d/dbus.pid ]] && kill "$(cat "$d/dbus.pid")" 2>/dev/null || true; done
    ip netns del "$ns_a" 2>/dev/null || true
    ip netns del "$ns_b" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns_a"
ip netns add "$ns_b"
ip -n "$ns_a" link add va type veth peer name vb netns "$ns_b"
ip -n "$ns_a" addr add 10.203.0.1/24 dev va
ip -n "$ns_b" addr add 10.203.0.2/24 dev vb
for ns in "$ns_a" "$ns_b"; do ip -n "$ns" link set lo up; done
ip -n "$ns_a" link set va up multicast on
ip -n "$ns_b" link set vb up multicast on
ip -n "$ns_a" route add 224.0.0.0/4 dev va
ip -n "$ns_b" route add 224.0.0.0/4 dev vb

# Debian's minimal.conf without its ALSA nodes (as tests/src/pipewire_graph.rs does), with
# the RTP source appended to B's context.modules.
python3 - "$work" "$latency_ms" <<'EOF'
import sys
work, latency = sys.argv[1], sys.argv[2]
out, entry, depth = [], None, 0
for line in open("/usr/share/pipewire/minimal.conf").read().splitlines(keepends=True):
    code = line.split("#")[0]
    opens, closes = code.count("{"), code.count("}")
    if entry is not None:
        entry += line; depth += opens - closes
        if depth <= 0:
            if not any("factory.name" in l.split("#")[0] and "api.alsa.pcm." in l.split("#")[0]
                       for l in entry.splitlines()):
                out.append(entry)
            entry = None
    elif code.lstrip().startswith("{ factory") and opens > closes:
        entry, depth = line, opens - closes
    else:
        out.append(line)
conf = "".join(out)
open(f"{work}/a.conf", "w").write(conf)
end = conf.index("\n]\n", conf.index("context.modules = ["))
source = f"""
    {{ name = libpipewire-module-rtp-source
      args = {{ sap.ip = "224.0.0.56" sess.latency.msec = {latency}
               stream.props = {{ node.name = "rtp-source" }} }} }}"""
open(f"{work}/b.conf", "w").write(conf[:end] + source + conf[end:])
EOF
cat >"$work/rtp-sink.conf" <<'EOF'
context.properties = { log.level = 2 }
context.spa-libs = {
    audio.convert.* = audioconvert/libspa-audioconvert
    support.*       = support/libspa-support
}
context.modules = [
    { name = libpipewire-module-protocol-native }
    { name = libpipewire-module-client-node }
    { name = libpipewire-module-adapter }
    { name = libpipewire-module-rtp-sink
      args = { destination.ip = "224.0.0.56" destination.port = 46000 net.mtu = 1280
               sess.min-ptime = 2 sess.max-ptime = 20 sess.name = "latentd"
               stream.props = { node.name = "rtp-sink" target.object = "null-sink"
                                stream.capture.sink = true } } }
]
EOF

# A private graph in namespace $2 under $work/rt-$1: D-Bus, pipewire -c $work/$1.conf,
# WirePlumber, a null sink.
graph() {
    local side=$1 ns=$2 d=$work/rt-$1
    mkdir -m 700 "$d"
    export XDG_RUNTIME_DIR=$d PIPEWIRE_RUNTIME_DIR=$d
    ip netns exec "$ns" dbus-daemon --session --fork --print-address=3 --print-pid=4 \
        3>"$d/dbus.addr" 4>"$d/dbus.pid"
    export DBUS_SESSION_BUS_ADDRESS; DBUS_SESSION_BUS_ADDRESS=$(cat "$d/dbus.addr")
    ip netns exec "$ns" pipewire -c "$work/$side.conf" >"$d/pipewire.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [[ -S $d/pipewire-0 ]] && break; sleep 0.1; done
    ip netns exec "$ns" wireplumber >"$d/wireplumber.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do pw-cli ls Client 2>/dev/null | grep -q WirePlumber && break; sleep 0.1; done
    pw-cli create-node adapter '{ factory.name=support.null-audio-sink node.name=null-sink
        media.class=Audio/Sink object.linger=true audio.position=[FL FR] }' >/dev/null
}
graph a "$ns_a"
ip netns exec "$ns_a" pipewire -c "$work/rtp-sink.conf" >"$work/rt-a/rtp-sink.log" 2>&1 &
pids+=($!)
graph b "$ns_b"

# latentd on A: the tone into A's null sink, OSC on A's veth address for B only.
python3 - "$work/tone.wav" <<'EOF'
import math, struct, sys
rate = 48000
data = b"".join(struct.pack("<ff", 0.5 * math.sin(2 * math.pi * 440 * i / rate),
                            0.5 * math.cos(2 * math.pi * 440 * i / rate)) for i in range(rate))
head = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 3, 2, rate, rate * 8, 8, 32) + b"data" + struct.pack("<I", len(data)))
open(sys.argv[1], "wb").write(head + data)
EOF
printf '[log]\nlevel = "info"\n[osc]\nallowlist = ["10.203.0.2/32"]\n' >"$work/latentd.toml"
XDG_RUNTIME_DIR=$work/rt-a PIPEWIRE_RUNTIME_DIR=$work/rt-a XDG_STATE_HOME=$work/state \
    XDG_CONFIG_HOME=$work/config ip netns exec "$ns_a" "$latentd" --audio pipewire --engine off \
    --source "$work/tone.wav" --config "$work/latentd.toml" --osc 10.203.0.1:7770 \
    --oscquery-port 0 --state "$work/state.json" >"$work/latentd.log" 2>&1 &
pids+=($!)
sleep 4

cat >"$work/measure.py" <<'EOF'
import math, os, socket, struct, subprocess, sys, threading, time
work, edges = sys.argv[1], int(sys.argv[2])
rate, daemon = 48000, ("10.203.0.1", 7770)
def osc(addr):
    a = addr.encode() + b"\0"
    return a + b"\0" * (-len(a) % 4) + b",\0\0\0"
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("10.203.0.2", 0))
frames = {}
def record(side):
    rt = f"{work}/rt-{side}"
    env = dict(os.environ, XDG_RUNTIME_DIR=rt, PIPEWIRE_RUNTIME_DIR=rt)
    p = subprocess.Popen(["pw-record", "--target", "null-sink", "--rate", str(rate), "--channels", "2",
                          "--format", "f32", "--latency", "256", "-"], stdout=subprocess.PIPE, env=env)
    out, buf = frames.setdefault(side, []), b""
    while chunk := p.stdout.read1(65536):
        now = time.monotonic()
        buf += chunk
        n = len(buf) // 8
        v = struct.unpack(f"<{2 * n}f", buf[:8 * n])
        buf = buf[8 * n:]
        out.extend((now - (n - 1 - i) / rate, math.hypot(v[2 * i], v[2 * i + 1])) for i in range(n))
for side in "ab":
    threading.Thread(target=record, args=(side,), daemon=True).start()
time.sleep(2)
sent = []
for _ in range(edges):
    sock.sendto(osc("/transport/pause"), daemon)
    time.sleep(0.6)
    sent.append(time.monotonic())
    sock.sendto(osc("/transport/play"), daemon)
    time.sleep(0.8)
time.sleep(0.5)
def onset(side, t):
    f = frames[side]
    return next((f[i][0] for i in range(1, len(f))
                 if f[i][0] > t and f[i - 1][1] < 0.005 and f[i][1] >= 0.005), None)
ms = lambda v: "[" + ", ".join("-" if x is None else f"{1000 * x:.1f}" for x in v) + "] ms"
at = {s: [onset(s, t) for t in sent] for s in "ab"}
print(f"control-to-ear at A {ms([o and o - t for o, t in zip(at['a'], sent)])}, "
      f"at B {ms([o and o - t for o, t in zip(at['b'], sent)])}; "
      f"added by the route (B - A) {ms([a and b and b - a for a, b in zip(at['a'], at['b'])])}")
EOF
echo "PipeWire RTP, rtp-source sess.latency.msec = $latency_ms:"
ip netns exec "$ns_b" python3 "$work/measure.py" "$work" "$edges"
if [[ ${DROP:-0} == 1 ]]; then
    ip -n "$ns_a" link set va down
    sleep 2
    ip -n "$ns_a" link set va up
    ip -n "$ns_a" route replace 224.0.0.0/4 dev va
    sleep 3
    kill -0 "${pids[-1]}" || { echo "latentd exited during the link drop" >&2; exit 1; }
    echo "after A's link was down for 2 s (latentd still running, not restarted):"
    ip netns exec "$ns_b" python3 "$work/measure.py" "$work" "$edges"
fi
