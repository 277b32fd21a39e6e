#!/usr/bin/env bash
# The test command of the README: installs into ./.venv, then runs the CPU test suite and lint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
python -m pytest -q "$@"
python -m flake8  # depixcli, tests, bench, scripts (config: setup.cfg)
