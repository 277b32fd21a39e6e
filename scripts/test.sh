#!/usr/bin/env bash
# The test command of the README: installs into ./.venv, then runs the CPU test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
python -m pytest -q "$@"
