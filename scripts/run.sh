#!/usr/bin/env bash
# Build and run latentd (release), passing every argument through:
#   ./scripts/run.sh --audio null --record out.wav
# Without --model or --engine it plays latentd's own trained model, models/gm-tiny
# (docs/models.md), on ONNX Runtime's CPU provider; `--engine builtin-cpu` picks the
# analytic built-in model instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
model=()
case " $* " in
  *" --model"* | *" --engine"*) ;;
  *) model=(--model models/gm-tiny) ;;
esac
exec cargo run --release -p latentd -- "${model[@]}" "$@"
