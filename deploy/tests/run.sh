#!/usr/bin/env bash
# Runs the deploy tests (deploy/tests/test_deploy.py) after installing what they need.
#   RUNNEL_BIN=target/release/runnel deploy/tests/run.sh [pytest args]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$HERE/setup.sh"
exec "$HERE/../.cache/venv/bin/python" -m pytest -q -rs "$HERE" "$@"
