#!/usr/bin/env bash
# Install the pinned torch into the venv without ever pulling the multi-GB CUDA wheels on a CPU-only machine.
#   1. a CPU wheel reachable without an index (pip's find-links, e.g. a local wheelhouse) is used first;
#   2. else, with no NVIDIA driver present, the CPU build comes from PyTorch's CPU index;
#   3. else (a GPU machine) the default PyPI build, which bundles CUDA.
set -euo pipefail
pip="$1"
version="$(grep -E '^torch==' constraints.txt | cut -d= -f3)"
if "$pip" install --no-index --no-deps "torch==${version}" >/dev/null 2>&1; then
  echo "torch ${version}: installed from a local wheel"
  "$pip" install "torch==${version}"  # its dependencies from the index; torch itself is already satisfied
elif ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "torch ${version}: no NVIDIA driver found, installing the CPU build"
  "$pip" install "torch==${version}" --index-url https://download.pytorch.org/whl/cpu \
    --extra-index-url https://pypi.org/simple
else
  "$pip" install "torch==${version}"
fi
