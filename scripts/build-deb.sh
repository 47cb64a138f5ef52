#!/usr/bin/env bash
# Builds the Debian package: latentd and latentctl in one cargo build (cargo-deb alone would
# build only the package it packs), then `cargo deb -p latentd --no-build` packs both
# binaries, the units, the sysusers/tmpfiles snippets, the config, docs/operations.md, the
# gm-tiny model bundle and the ONNX Runtime library with its licence (from .ort/, which
# scripts/setup.sh fills)
# ([package.metadata.deb] in daemon/Cargo.toml). Prints the .deb's path as the last line of
# stdout; everything else goes to stderr.
#
#   scripts/build-deb.sh [--profile NAME] [--prebuilt] [CARGO-DEB OPTIONS...]
#
# --profile: the Cargo profile to build and pack (default release). --prebuilt: build
# nothing, pack the binaries already in that profile's folder (scripts/test.sh packs the
# ones its test run just built and tested). Other options go to cargo deb, e.g.
# --deb-revision 2, --deb-version 0.1.0-2, --fast, --strip, -o DIR.
# Honours CARGO_TARGET_DIR: cargo-deb reads asset paths starting with `target/release/` as
# "this profile's folder in the real target directory", wherever that is.
set -euo pipefail
cd "$(dirname "$0")/.."

# The cargo-deb this script is tested with; a missing one is installed at this version.
cargo_deb_version=3.8.0

profile=release
prebuilt=no
while (($#)); do
    case $1 in
    --profile)
        [[ $# -ge 2 ]] || { echo "build-deb: --profile needs a profile name" >&2; exit 2; }
        profile=$2
        shift 2
        ;;
    --prebuilt) prebuilt=yes && shift ;;
    *) break ;;
    esac
done

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: installing cargo-deb $cargo_deb_version" >&2
    cargo install cargo-deb --version "$cargo_deb_version" --locked >&2
fi
command -v dpkg >/dev/null || { echo "build-deb: dpkg not found (cargo-deb needs it for \$auto dependencies)" >&2; exit 1; }

target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
profile_dir=$profile
case $profile in dev | test) profile_dir=debug ;; bench) profile_dir=release ;; esac
if [[ $prebuilt == no ]]; then
    cargo build --locked --profile "$profile" -p latentd -p latentctl >&2
fi
# The package ships ONNX Runtime and latentd's own model (daemon/Cargo.toml's assets).
for asset in .ort/libonnxruntime.so .ort/LICENSE .ort/ThirdPartyNotices.txt models/gm-tiny/bundle.toml; do
    [[ -f $asset ]] || { echo "build-deb: no $asset (run scripts/setup.sh first)" >&2; exit 1; }
done
for bin in latentd latentctl; do
    [[ -x $target_dir/$profile_dir/$bin ]] ||
        { echo "build-deb: no $target_dir/$profile_dir/$bin (build it first, or drop --prebuilt)" >&2; exit 1; }
done

# cargo-deb warns that it will refuse the dev profile, so debug binaries are handed to it
# as the release ones of a scratch target directory; the .deb still goes to the real one.
deb_env=()
deb_profile=$profile
if [[ $profile_dir == debug ]]; then
    scratch=$(mktemp -d "$target_dir/deb-scratch.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
    mkdir "$scratch/release"
    for bin in latentd latentctl; do
        ln "$target_dir/debug/$bin" "$scratch/release/" 2>/dev/null || cp "$target_dir/debug/$bin" "$scratch/release/"
    done
    deb_env=(CARGO_TARGET_DIR="$scratch")
    deb_profile=release
fi
output=(-o "$target_dir/debian")
for arg in "$@"; do
    [[ $arg == -o || $arg == --output* ]] && output=()
done

# cargo deb prints the written path on stdout; its progress goes to stderr.
deb=$(env "${deb_env[@]}" cargo deb --no-build --profile "$deb_profile" -p latentd "${output[@]}" "$@" | tail -n 1)
[[ -f $deb ]] || { echo "build-deb: cargo deb did not name a written .deb (got: '$deb')" >&2; exit 1; }
echo "$deb"
