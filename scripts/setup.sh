#!/usr/bin/env bash
# Install what latentd needs to build and test (Debian/Ubuntu), skipping what is present.
# Idempotent: run it as often as you like.
#
#   scripts/setup.sh                  # the daemon, its tests' tools (scripts/run.sh)
#   scripts/setup.sh --export-tools   # and tools/export-acestep's (scripts/test.sh)
set -euo pipefail

export_tools=0
case "${1:-}" in
    --export-tools) export_tools=1 ;;
    "") ;;
    *)
        echo "setup: unknown argument: $1 (accepted: --export-tools)" >&2
        exit 2
        ;;
esac

packages=(
    build-essential pkg-config clang
    libjack-jackd2-dev jackd2
    libpipewire-0.3-dev pipewire pipewire-bin wireplumber dbus
    liblo-tools
    rt-tests # cyclictest: scripts/bench-knob-to-ear.sh's wake-up latency probe
    iproute2 util-linux # ip, unshare: daemon/tests/discovery.rs's private network namespace
    systemd # systemd-analyze, systemd-sysusers, systemd-tmpfiles for scripts/verify-units.sh
    # MuseScore_General_Lite.sf3 (MIT): tools/train/make_dataset.py renders training clips with it.
    # Never a GPL soundfont (timgm6mb-soundfont) for training data.
    musescore-general-soundfont-small
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

# pip install that also works under PEP 668 (a Debian system Python).
pip_install() {
    python3 -m pip install --quiet "$@" 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages "$@"
}

# python-osc: an independent OSC implementation the OSC tests talk to (and the Python
# client example's dependency).
if ! python3 -c "import pythonosc" 2>/dev/null; then
    echo "setup: installing python-osc (pip)" >&2
    pip_install python-osc
fi

# prometheus_client: its OpenMetrics parser reads the daemon's GET /metrics in the metrics
# test (an independent parser of what prometheus-client encodes).
prom_version=0.26.0
if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('prometheus_client') != '$prom_version')" 2>/dev/null; then
    echo "setup: installing prometheus_client==$prom_version (pip)" >&2
    pip_install "prometheus_client==$prom_version"
fi

# onnx + numpy: tools/bundles/make_test_bundle.py writes the test model bundles with them
# (the bundle tests run it).
onnx_version=1.23.2
if ! python3 -c "import numpy, onnx, sys; sys.exit(onnx.__version__ != '$onnx_version')" 2>/dev/null; then
    echo "setup: installing onnx==$onnx_version and numpy (pip)" >&2
    pip_install "onnx==$onnx_version" numpy
fi

# tinysoundfont: the offline renderer of tools/train/make_dataset.py (and its tests).
# --no-deps: its pyaudio dependency is for live playback only and does not build here.
tsf_version=0.3.7
if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('tinysoundfont') != '$tsf_version')" 2>/dev/null; then
    echo "setup: installing tinysoundfont==$tsf_version (pip, --no-deps)" >&2
    pip_install --no-deps "tinysoundfont==$tsf_version"
fi

# The ONNX Runtime library the `onnx` model backend loads at run time (the `ort` crate
# is built with load-dynamic: nothing is downloaded at build time). It comes from the
# `onnxruntime` wheel on PyPI, unpacked with its LICENSE and ThirdPartyNotices.txt into the
# ignored folder .ort/ at the repository root; latentd finds it there, or through
# ORT_DYLIB_PATH or the config's `[model] runtime` (docs/bundles.md); the Debian package
# ships all three (scripts/build-deb.sh). .ort/VERSION records the version installed.
ort_version=1.32.0
repo_root=$(cd "$(dirname "$0")/.." && pwd)
ort_dir="$repo_root/.ort"
if [[ -f $ort_dir/libonnxruntime.so && -f $ort_dir/LICENSE && -f $ort_dir/ThirdPartyNotices.txt &&
    $(cat "$ort_dir/VERSION" 2>/dev/null) == "$ort_version" ]]; then
    : # present, right version
else
    echo "setup: installing ONNX Runtime $ort_version into $ort_dir (from the onnxruntime wheel)" >&2
    wheel_dir=$(mktemp -d)
    trap 'rm -rf "$wheel_dir"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$wheel_dir" "onnxruntime==$ort_version"
    mkdir -p "$ort_dir"
    rm -f "$ort_dir/VERSION"
    # Unpack the one library out of the wheel (a zip), written under a temporary name and
    # renamed, so an interrupted run never leaves a half-written library in place.
    python3 - "$wheel_dir" "$ort_dir" "$ort_version" <<'PY'
import glob, os, shutil, sys, zipfile
wheel_dir, ort_dir, version = sys.argv[1:]
wheels = glob.glob(os.path.join(wheel_dir, "onnxruntime-*.whl"))
if len(wheels) != 1:
    sys.exit(f"setup: expected one onnxruntime wheel in {wheel_dir}, found {wheels}")
# The library, and its licence and third-party notices (the Debian package ships all three).
members = {
    f"onnxruntime/capi/libonnxruntime.so.{version}": "libonnxruntime.so",
    "onnxruntime/LICENSE": "LICENSE",
    "onnxruntime/ThirdPartyNotices.txt": "ThirdPartyNotices.txt",
}
with zipfile.ZipFile(wheels[0]) as wheel:
    for member, name in members.items():
        tmp = os.path.join(ort_dir, name + ".tmp")
        with wheel.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, os.path.join(ort_dir, name))
PY
    echo "$ort_version" >"$ort_dir/VERSION"
    rm -rf "$wheel_dir"
    trap - EXIT
fi

# --export-tools: what tools/export-acestep needs: torch (with its exporter's onnxscript),
# diffusers and transformers (ACE-Step v1.5's model code), and the onnxruntime Python package
# (its tests check the graphs with it; the same version as the library above). For the
# export tool and its tests only: the daemon needs none of this. torch comes from PyPI, with
# the CUDA libraries its wheel depends on (about 5 GB installed): a CPU-only wheel would need
# download.pytorch.org, which CI cannot reach.
if ((export_tools)); then
    missing=()
    for pin in torch==2.15.0 onnxscript==0.7.2 diffusers==0.42.1 transformers==5.25.0 \
        "onnxruntime==$ort_version"; do
        name=${pin%%==*} version=${pin##*==}
        if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('$name') != '$version')" 2>/dev/null; then
            missing+=("$pin")
        fi
    done
    if ((${#missing[@]})); then
        echo "setup: installing ${missing[*]} (pip)" >&2
        # onnx stays at the version pinned above for the test bundles.
        pip_install "${missing[@]}" "onnx==$onnx_version"
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        echo "setup: cargo is in ~/.cargo/bin but not on PATH; run: . \"\$HOME/.cargo/env\"" >&2
    else
        echo "setup: cargo not found; install Rust with rustup: https://rustup.rs" >&2
    fi
    exit 1
fi
