#!/usr/bin/env bash
# Build and run latentd (release), passing every argument through:
#   ./scripts/run.sh --audio null --record out.wav
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec cargo run --release -p latentd -- "$@"
