#!/usr/bin/env bash
# Prepare gm-tiny's GPU training run, HERE (the dev machine), from the repository root: put
# what the lent GPU machine lacks into target/device-carry/ (ignored by git, so it travels
# only when a `device` call names it in `carry`):
#   wheels/   tinysoundfont 0.3.7 for the machine's Python 3.12 (its only missing package)
#   sf/       MuseScore_General_Lite.sf3 (MIT, Debian musescore-general-soundfont-small);
#             make_dataset.py accepts it there by its SHA-256
# Then one call runs tools/train/device/train.sh there (see that file and
# tools/train/README.md, "Training on a lent GPU").
set -euo pipefail
cd "$(dirname "$0")/../../.."
CARRY=target/device-carry
SF=/usr/share/sounds/sf3/MuseScore_General_Lite.sf3
[ -f "$SF" ] || { echo "prepare: $SF is missing: run ./scripts/setup.sh first" >&2; exit 2; }
rm -rf "$CARRY"
mkdir -p "$CARRY/wheels" "$CARRY/sf"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$CARRY/wheels" tinysoundfont==0.3.7
cp "$SF" "$CARRY/sf/"
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
carry=$(du -sb "$CARRY" | cut -f1)
echo "prepare: $CARRY ready; working tree $((tree / 1048576)) MiB + carry $((carry / 1048576)) MiB" \
    "of the 64 MiB a call takes"
