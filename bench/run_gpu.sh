#!/bin/sh
# The CUDA engine and the PyTorch reference side by side on a GPU machine: Wan2.1-T2V-1.3B, random weights, one forward
# pass at 480p x 81 frames (latent 21x60x104, 32,760 tokens), bf16. Prints both programs' output and, for each of our
# attention kernels, the ratio of our time to PyTorch's (below 1: we are faster).
#
#   sh bench/run_gpu.sh                        # full model, 3 timed reps each
#   sh bench/run_gpu.sh --layers 4 --reps 5    # options go to both programs (--grid FxHxW too)
#   SVG_SPARSITY=0.5 sh bench/run_gpu.sh       # the sparsity of our Sparse VideoGen row (default 0.75)
#
# Needs nvcc (to build build/bench_cuda_forward) and, for the comparison, a python3 with CUDA-enabled torch
# (PYTHON=/path/to/python3 to choose it).
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

make build/bench_cuda_forward
echo "== cachebench CUDA engine"
# --svg 0.75 adds Sparse VideoGen forwards (the reference's Wan2.1 setting, 25% of pairs kept) to our side; an
# --svg in "$@" (it comes later) overrides it.
./build/bench_cuda_forward --svg "${SVG_SPARSITY:-0.75}" "$@" | tee "$tmp/cuda.txt"
if ! grep -q '^RESULT backend=cachebench' "$tmp/cuda.txt"; then
    echo "run_gpu.sh: the CUDA benchmark produced no result (see above)"
    exit 1
fi

echo "== PyTorch ($PYTHON)"
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "run_gpu.sh: $PYTHON has no CUDA-enabled torch; no comparison"
    exit 1
fi
"$PYTHON" bench/torch_dit.py "$@" | tee "$tmp/torch.txt"
torch_ms=$(awk '/^RESULT backend=torch/ { for (i = 1; i <= NF; i++) if ($i ~ /^ms=/) print substr($i, 4) }' "$tmp/torch.txt")
if [ -z "$torch_ms" ]; then
    echo "run_gpu.sh: the PyTorch benchmark produced no result (see above)"
    exit 1
fi

echo "== ratio (ms ours / ms PyTorch; below 1 is faster than PyTorch)"
awk -v torch_ms="$torch_ms" '/^RESULT backend=cachebench/ {
    att = ""; ms = 0
    for (i = 1; i <= NF; i++) {
        if ($i ~ /^attention=/) att = substr($i, 11)
        if ($i ~ /^ms=/) ms = substr($i, 4)
    }
    printf "%-8s %10.1f ms  vs  torch %10.1f ms  ratio %.2f\n", att, ms, torch_ms, ms / torch_ms
}' "$tmp/cuda.txt"
