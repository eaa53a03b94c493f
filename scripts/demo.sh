#!/usr/bin/env bash
# The whole pipeline on built-in data, on the CPU, in a few minutes:
#   synthetic E2E-style data -> a tiny GPT-2 base -> LoRA fine-tuning -> beam search -> decode -> score -> report
#
#   bash scripts/demo.sh [WORK_DIR]        (default: runs/demo)
#
# No pretrained GPT-2 is downloaded: a tiny randomly initialised GPT-2 is trained on the synthetic set as a
# stand-in base, then LoRA-tuned on top of it (the settings: gpt2_lora/recipes.py, DEMO*; the steps:
# gpt2_lora/demo.py). METEOR and the PTB tokenizer run the jars when Java is present, else their
# Python ports (same scores; the first Python run caches the paraphrase table in ~/.cache/gpt2-lora).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export PYTHONUNBUFFERED=1
# GPT-2's BPE files: data/gpt2 or $GPT2_LORA_VOCAB; else a local mirror; else tiktoken downloads them once.
if [ -z "${GPT2_LORA_VOCAB:-}" ] && [ ! -f data/gpt2/encoder.json ] && [ -f "$ROOT/../shared/data/gpt2/encoder.json" ]; then
  export GPT2_LORA_VOCAB="$ROOT/../shared/data/gpt2"
fi
exec python -m gpt2_lora.demo "$@"
