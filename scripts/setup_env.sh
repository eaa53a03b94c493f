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
  # An unpinned torch would pull a multi-GB CUDA build. torch==2.13.0 is the CPU build on machines that keep
  # it locally (this project's CI); elsewhere set GPT2_LORA_TORCH_INDEX=https://download.pytorch.org/whl/cpu.
  INDEX=(); [ -n "${GPT2_LORA_TORCH_INDEX:-}" ] && INDEX=(--index-url "$GPT2_LORA_TORCH_INDEX")
  python -c "import torch" 2>/dev/null || python -m pip install -q ${INDEX[@]+"${INDEX[@]}"} "torch==${GPT2_LORA_TORCH:-2.13.0}"
  python -m pip install -q -e "$ROOT[test]"
  touch "$stamp"
fi
