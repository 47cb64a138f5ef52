#!/usr/bin/env bash
# Install what tools/export-acestep needs, skipping what is present: torch (with its
# exporter's onnxscript), diffusers and transformers (ACE-Step v1.5's model code) and the
# onnxruntime Python package (its tests check the graphs with it). For the export tool and its
# tests only: the daemon needs none of this. Idempotent.
#
# torch comes from PyPI, with the CUDA libraries its wheel depends on (about 5 GB installed):
# a CPU-only wheel would need download.pytorch.org, which CI cannot reach.
set -euo pipefail

pip_install() {
    python3 -m pip install --quiet "$@" 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages "$@"
}

# name==version for each; each is installed only where that exact version is missing.
wanted=(
    torch==2.15.0
    onnxscript==0.7.2
    diffusers==0.42.1
    transformers==5.25.0
    onnxruntime==1.32.0
)
missing=()
for pin in "${wanted[@]}"; do
    name=${pin%%==*} version=${pin##*==}
    if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('$name') != '$version')" 2>/dev/null; then
        missing+=("$pin")
    fi
done
if ((${#missing[@]})); then
    echo "setup-export-tools: installing ${missing[*]} (pip)" >&2
    # onnx stays at the version scripts/setup.sh pins for the test bundles.
    onnx_pin=$(python3 -c "import onnx; print(onnx.__version__)")
    pip_install "${missing[@]}" "onnx==$onnx_pin"
fi
