#!/usr/bin/env bash
# Create (or reuse) .venv with a CPU build of torch and this package installed with its test extras.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (fast when already set up).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GPT2_LORA_VENV:-$ROOT/.venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
stamp="$VENV/.gpt2_lora_installed"
if [[ ! -f "$stamp" || "$ROOT/setup.cfg" -nt "$stamp" ]]; then
  python -m pip install -q --upgrade pip
  # An unpinned torch would pull a multi-GB CUDA build; take the CPU build unless torch is already there.
  python -c "import torch" 2>/dev/null || python -m pip install -q "torch==${GPT2_LORA_TORCH:-2.13.0}"
  python -m pip install -q -e "$ROOT[test]"
  touch "$stamp"
fi
