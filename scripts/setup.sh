#!/usr/bin/env bash
# Install what latentd needs to build and test (Debian/Ubuntu), skipping what is present.
# Idempotent: run it as often as you like.
set -euo pipefail

packages=(
    build-essential pkg-config clang
    libjack-jackd2-dev jackd2
    libpipewire-0.3-dev pipewire pipewire-bin wireplumber dbus
    liblo-tools
    rt-tests # cyclictest: scripts/bench-knob-to-ear.sh's wake-up latency probe
    systemd # systemd-analyze, systemd-sysusers, systemd-tmpfiles for scripts/verify-units.sh
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo_cmd=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -q
    # jackd2 asks whether to enable realtime scheduling; answer for it.
    echo "jackd2 jackd/tweak_rt_limits boolean false" | "${sudo_cmd[@]}" debconf-set-selections
    "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# python-osc: an independent OSC implementation the OSC tests talk to (and the Python
# client example's dependency).
if ! python3 -c "import pythonosc" 2>/dev/null; then
    echo "setup: installing python-osc (pip)" >&2
    python3 -m pip install --quiet python-osc 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages python-osc
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        echo "setup: cargo is in ~/.cargo/bin but not on PATH; run: . \"\$HOME/.cargo/env\"" >&2
    else
        echo "setup: cargo not found; install Rust with rustup: https://rustup.rs" >&2
    fi
    exit 1
fi
