#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project with its training, compiler and test
# extras, pinned by constraints.txt. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e ".[train,compile,openvino,video,bench,test,dev]"
