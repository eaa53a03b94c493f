#!/usr/bin/env bash
# Fine-tune GPT-2 with LoRA on E2E, WebNLG 2017 or DART with the paper's hyper-parameters (Hu et al. 2021,
# Table 11; microsoft/LoRA examples/NLG README; written in gpt2_lora/recipes.py): the prepare and train stages
# of gpt2_lora.pipeline. scripts/train_{e2e,webnlg,dart}.sh call this.
#
#   scripts/train_task.sh e2e|webnlg|dart [more gpt2_lora.train flags]   # later flags win: e.g. --max_epoch 1
#
# Environment (all optional):
#   GPT2_CKPT   pretrained GPT-2 weights (or pass --init_checkpoint); default
#               pretrained_checkpoints/<gpt2|gpt2-medium|gpt2-large>-pytorch_model.bin,
#               as written by scripts/download_pretrained_checkpoints.sh
#   MODEL       gpt2.md (default), gpt2.sm, gpt2.lg or an HF config.json (then GPT2_CKPT is needed)
#   DATA        data root holding e2e/, webnlg_challenge_2017/, dart/ (default <repo>/data)
#   WORK_DIR    output folder (default trained_models/GPT2_<S|M|L>/<task>)
#   NPROC, PRECISION, RESIDUAL, PACKED_ATTENTION, GRAPHS, COMPILE, BATCHING, MAX_TOKENS: see
#               scripts/pipeline_env.sh (on a GPU the default is bf16 with --cuda_graphs, on the CPU fp32 eager);
#   PYTHON      interpreter (default python)
# Running it again continues an unfinished run, and says "up to date" for a finished one.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck source=pipeline_env.sh
source "$REPO/scripts/pipeline_env.sh"
TASK=${1:-}; shift || true
UPSTREAM_LAYOUT="$REPO/trained_models/GPT2_{size}/{task}"  # the pipeline fills in S/M/L and the task
OPTS=(--stages prepare,train --work_dir "${WORK_DIR:-$UPSTREAM_LAYOUT}")
[ -n "${MODEL:-}" ] && OPTS+=(--model_card "$MODEL")
[ -n "${DATA:-}" ] && OPTS+=(--data "$DATA")
exec "${PYTHON:-python}" -m gpt2_lora.pipeline "$TASK" "${OPTS[@]}" ${PIPELINE_ENV[@]+"${PIPELINE_ENV[@]}"} -- "$@"
