#!/usr/bin/env bash
# The project's checks: formatting, lint, types (zoo_core) and the test suite.
#
#   bash scripts/check.sh            (after bash scripts/setup.sh; ZOO_VENV as there)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ZOO_VENV:-.venv}"

"$VENV/bin/ruff" format --check .
"$VENV/bin/ruff" check .
"$VENV/bin/mypy"
"$VENV/bin/python" -m pytest "$@"                     # zoo_core and the torch backend
# every other backend plugin in a pytest process of its own: frameworks cannot all share one
# process (importing paddle before mindspore fails)
"$VENV/bin/python" -m pytest plugins/paddle_backend/tests "$@"
"$VENV/bin/python" -m pytest plugins/mindspore_backend/tests "$@"
