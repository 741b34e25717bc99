#!/usr/bin/env bash
# The project's checks: formatting, lint, types (zoo_core) and the test suite.
#
#   bash scripts/check.sh            (after bash scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"                     # zoo_core and the torch backend
# every other backend plugin in a pytest process of its own: frameworks cannot all share one
# process (importing paddle before mindspore fails)
.venv/bin/python -m pytest plugins/paddle_backend/tests "$@"
