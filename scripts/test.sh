#!/usr/bin/env bash
# Install what is missing, then run every test in the workspace. The JACK tests start and
# stop their own private dummy servers, the PipeWire tests their own private graphs (dbus,
# pipewire, wireplumber, a null sink); nothing needs to be running beforehand.
# Extra arguments go to the workspace `cargo test` run.
set -euo pipefail
cd "$(dirname "$0")/.."
# With the ACE-Step export tool's dependencies (torch, diffusers, transformers): its tests
# and the daemon test that plays its exports must run, not skip.
./scripts/setup.sh --export-tools
export LATENTD_REQUIRE_EXPORT_TOOLS="${LATENTD_REQUIRE_EXPORT_TOOLS:-1}"
# The PipeWire tests skip (saying why) when a graph cannot start; here everything they need
# was just installed, so a skip is a failure unless the caller says otherwise.
export LATENTD_REQUIRE_PIPEWIRE="${LATENTD_REQUIRE_PIPEWIRE:-1}"
# setup.sh installed ONNX Runtime (.ort/) and the bundle tools (python onnx): the model
# bundle tests must run, not skip.
export LATENTD_REQUIRE_ORT="${LATENTD_REQUIRE_ORT:-1}"
# The zeroconf test runs the daemon and an mDNS browser in a private network namespace
# (unshare -rn, ip from iproute2, installed above); as root that always works, so a skip
# is a failure unless the caller says otherwise.
export LATENTD_REQUIRE_NETNS="${LATENTD_REQUIRE_NETNS:-1}"
# The tmpfs fault tests (disk full, read-only state folder) mount a small tmpfs: where this
# shell may mount one (root with CAP_SYS_ADMIN, as in CI), a skip is a failure.
probe=$(mktemp -d)
if mount -t tmpfs -o size=1m tmpfs "$probe" 2>/dev/null; then
    umount "$probe"
    export LATENTD_REQUIRE_MOUNT="${LATENTD_REQUIRE_MOUNT:-1}"
fi
rmdir "$probe"
# Free disk, printed first: a full disk shows up later as a linker Bus error.
df -h . | tail -1
# The fault tests (faults, service) need the test-only hooks: `required-features` skips
# them in a plain `cargo test`, so they are switched on here.
cargo test --workspace --no-fail-fast --features latentd/fault-injection "$@"
# The systemd units: systemd-analyze verify, sysusers/tmpfiles, and their ExecStart= flags
# and the shipped config through the binary the tests just built (about a second).
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
LATENTD_BIN="$target_dir/debug/latentd" ./scripts/verify-units.sh
# The Debian package: install, upgrade over an edited config, purge (scripts/verify-deb.sh,
# 10-20 s, plus building cargo-deb once where it is missing). It packs the binaries the
# tests just built (a release build would add minutes), so it runs before the CUDA build
# below replaces target/debug/latentd. It installs packages, so only as root on Debian, and
# not over an installed latentd.
if [[ ${LATENTD_SKIP_DEB:-0} == 1 ]]; then
    echo "test.sh: skipping the Debian package check: LATENTD_SKIP_DEB=1"
elif [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: skipping the Debian package check: not root (it installs and purges latentd)"
elif [[ ! -f /etc/debian_version ]]; then
    echo "test.sh: skipping the Debian package check: not a Debian system"
elif dpkg-query -W -f='${db:Status-Status}' latentd 2>/dev/null | grep -qv '^not-installed$'; then
    echo "test.sh: skipping the Debian package check: latentd is installed here (or its config is left: dpkg state $(dpkg-query -W -f='${db:Status-Status}' latentd))"
else
    ./scripts/verify-deb.sh --profile dev --prebuilt --strip
fi
# The CUDA backend builds everywhere (cudarc loads the driver at run time); its CPU-side
# tests (C parity, failover) run here, its GPU tests skip saying so. scripts/gpu-check.sh
# runs them on a GPU machine.
cargo build -p latentd --features cuda
cargo test -p latentd-engine --features cuda --lib model::cuda
# The lock-free protocols, model-checked by loom (a separate build with --cfg loom): the
# ring's publish, the realtime callbacks' try-lock (TryCell, the daemon's ProcessorSlot) and
# the action log's applied prefix. Seconds in all; the one model too large to explore whole
# bounds itself at 3 preemptions (actions_loom.rs says which).
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p latentd-engine --release --test ring_loom --test try_cell_loom --test actions_loom
# The training-data generator (tools/train/data): composer determinism, real rendering
# with tinysoundfont and the Debian soundfont setup.sh installed, tags, covers, seed spaces
# (about 10 s; Python, no torch).
python3 -m unittest discover -s tools/train/tests
# The ACE-Step exporter on ACE-Step v1.5's model code at small widths, random weights: the
# graphs against the torch modules at new shapes, batch rows, the DiT's convention mapping
# (about a minute).
python3 -m unittest discover -s tools/export-acestep/tests
# The house gates, mechanical: formatting, clippy with warnings as errors, rustdoc without
# warnings (each skipped, saying so, where the toolchain lacks the component).
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all --check
else
    echo "test.sh: skipping cargo fmt --check: rustfmt is not installed"
fi
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --workspace --all-targets -- -D warnings
    # The CUDA backend, which the run above does not compile: clippy.toml refuses the
    # blocking cudarc calls outside its counting `Driver` (model/cuda/device.rs).
    cargo clippy -p latentd-engine --features cuda --all-targets -- -D warnings
else
    echo "test.sh: skipping clippy: it is not installed"
fi
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
