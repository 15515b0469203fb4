#!/usr/bin/env bash
# One prepared check for a lent GPU machine (no Rust and no network there), at most 8 minutes:
# the benchmark rows on CUDA for flowvae and for the PyTorch reference (the machine's own torch
# 2.11), one epoch of configs/seed-mnist-resnet.json, then IS (k = 1000) on 500 test images.
# Prints one JSON summary (and writes $OUT/gpu-results.json when OUT is set); save it as
# benches/gpu-results.json and `cargo xtask bench` puts it in BENCHMARKS.md.
#
# Prepare on the build machine:  cargo xtask bench --gpu-kit     (writes target/gpu-kit)
# Run on the GPU machine:        scripts/gpu-check.sh [KIT [gpu_check.py options]]  (KIT: target/gpu-kit)
set -euo pipefail
cd "$(dirname "$0")/.."
KIT="${1:-target/gpu-kit}"
if [ ! -x "$KIT/vae" ] || [ ! -d "$KIT/data/mnist" ]; then
    echo "gpu-check: $KIT/vae or $KIT/data/mnist is missing: run \`cargo xtask bench --gpu-kit\` on the build machine and carry $KIT" >&2
    exit 2
fi
TORCH_LIB="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
python3 -c 'import torch; assert torch.cuda.is_available(), "torch sees no GPU"; print("gpu-check: torch", torch.__version__, torch.cuda.get_device_name(), file=__import__("sys").stderr)'
# libtorch's own RPATH finds the nvidia libraries once its folder is on the search path (docs/TOOLCHAIN.md §4).
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FLOWVAE_DATA="$KIT/data"
export PYTHONUNBUFFERED=1
"$KIT/vae" --version >&2
exec timeout 475 python3 benches/reference/gpu_check.py --kit "$KIT" --budget 440 "${@:2}"
