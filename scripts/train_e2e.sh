#!/usr/bin/env bash
# Fine-tune GPT-2 with LoRA on E2E NLG with the paper's hyper-parameters; see scripts/train_task.sh.
#   scripts/train_e2e.sh [more gpt2_lora.train flags]      # later flags win: e.g. --max_epoch 1
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_task.sh" e2e "$@"
