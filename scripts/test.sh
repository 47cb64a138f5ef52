#!/usr/bin/env bash
# Install what is missing, then run every test in the workspace. The JACK tests start and
# stop their own private dummy servers; nothing needs to be running beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec cargo test --workspace "$@"
