#!/usr/bin/env bash
# The real Rucio server for the tests, in its own virtualenv (.venv-rucio), from tests/infra/rucio-server.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-rucio
STAMP=$VENV/.installed
REQUIREMENTS=tests/infra/rucio-server.txt
if [ -f "$STAMP" ] && [ "$STAMP" -nt "$REQUIREMENTS" ]; then
  exit 0
fi
PYTHON=${PYTHON:-python3}
test -x $VENV/bin/python || "$PYTHON" -m venv $VENV
$VENV/bin/python -m pip install -q --upgrade pip
$VENV/bin/python -m pip install -q -r $REQUIREMENTS
touch "$STAMP"
