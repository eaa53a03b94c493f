#!/usr/bin/env bash
# Run the test suite on a fresh machine: sets up .venv (CPU torch), then pytest on 2 workers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
python -m pytest -n "${PYTEST_WORKERS:-2}" -q "$@"
