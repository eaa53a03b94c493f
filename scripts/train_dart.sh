#!/usr/bin/env bash
# Fine-tune GPT-2 with LoRA on DART with the paper's hyper-parameters; see scripts/train_task.sh.
#   scripts/train_dart.sh [more gpt2_lora.train flags]      # later flags win: e.g. --max_epoch 1
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_task.sh" dart "$@"
