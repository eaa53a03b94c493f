#!/usr/bin/env bash
# Fine-tune GPT-2 with LoRA on E2E, WebNLG 2017 or DART using the paper's hyper-parameters (Hu et al. 2021,
# Table 11; microsoft/LoRA examples/NLG README). scripts/train_{e2e,webnlg,dart}.sh call this.
#
#   scripts/train_task.sh e2e|webnlg|dart [more gpt2_lora.train flags]   # later flags win: e.g. --max_epoch 1
#
# Environment (all optional):
#   GPT2_CKPT   pretrained GPT-2 weights (or pass --init_checkpoint); default
#               pretrained_checkpoints/<gpt2|gpt2-medium|gpt2-large>-pytorch_model.bin,
#               as written by scripts/download_pretrained_checkpoints.sh
#   MODEL       gpt2.md (default), gpt2.sm, gpt2.lg or an HF config.json (then GPT2_CKPT is needed)
#   DATA        data root holding e2e/, webnlg_challenge_2017/, dart/ (default <repo>/data, see
#               scripts/download_data.sh)
#   WORK_DIR    output folder (default trained_models/GPT2_<S|M|L>/<task>)
#   NPROC       GPUs; above 1 runs torchrun (global batch = 8 x NPROC, as upstream)
#   PRECISION   bf16 (default), fp32 or fp16; RESIDUAL=bf16: a bf16 residual stream (faster, rounds it)
#   PACKED_ATTENTION  mask (default) or varlen, with BATCHING=packed (see --packed_attention)
#   GRAPHS      1 (default): --cuda_graphs, the whole step as one CUDA graph (the measured fast path;
#               one GPU, falls back to the eager step elsewhere); 0: eager step
#   COMPILE     1 or a torch.compile mode (e.g. reduce-overhead): torch.compile instead of CUDA graphs
#               (PRECISION=fp32 GRAPHS=0 BATCHING=padded: upstream's fp32 tensors, padded to 512)
#   BATCHING    dynamic (default), padded, bucketed or packed; MAX_TOKENS: token budget per batch for
#               bucketed/packed (the throughput mode: BATCHING=packed MAX_TOKENS=16384 COMPILE=1; not the
#               paper's batch size); PYTHON: interpreter (default python)
set -euo pipefail
die() { echo "error: $*" >&2; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
MODEL="${MODEL:-gpt2.md}"
case "$MODEL" in
  gpt2.sm) SIZE=gpt2; TAG=S ;;
  gpt2.md) SIZE=gpt2-medium; TAG=M ;;
  gpt2.lg) SIZE=gpt2-large; TAG=L ;;
  *) [ -f "$MODEL" ] || die "MODEL=$MODEL: expected gpt2.sm, gpt2.md, gpt2.lg or an HF config.json"
     SIZE=""; TAG=custom ;;
esac
DATA="${DATA:-$REPO/data}"
TASK=${1:-}; shift || true
# task -> data folder, source file that marks raw data, name, and the hyper-parameters that differ
case "$TASK" in
  e2e) SUB=e2e; RAW=train.txt; NAME="E2E NLG"; WD=0.01; DROP=0.1; SMOOTH=0.1 ;;
  webnlg) SUB=webnlg_challenge_2017; RAW=train.json; NAME="WebNLG 2017"; WD=0.01; DROP=0.1; SMOOTH=0.1 ;;
  dart) SUB=dart; RAW=dart-v1.1.1-full-train.json; NAME="DART"; WD=0.0; DROP=0.0; SMOOTH=0.0 ;;
  *) die "usage: scripts/train_task.sh e2e|webnlg|dart [gpt2_lora.train flags] (got task '$TASK')" ;;
esac
DIR="$DATA/$SUB"
WORK_DIR="${WORK_DIR:-$REPO/trained_models/GPT2_$TAG/$TASK}"

# Data: (re)encode from the source files when they are here (a no-op when up to date).
if [ -f "$DIR/$RAW" ]; then
  VOCAB=()
  [ -f "$DATA/gpt2/encoder.json" ] && VOCAB=(--vocab "$DATA/gpt2")
  "$PYTHON" -m gpt2_lora.prepare --task "$TASK" --src "$DIR" --out "$DIR" ${VOCAB[@]+"${VOCAB[@]}"}
elif [ ! -f "$DIR/train.jsonl" ] || [ ! -f "$DIR/valid.jsonl" ]; then
  die "no $NAME data in $DIR: run scripts/download_data.sh (offline: scripts/download_data.sh --mirror DIR), or set DATA"
fi

# Pretrained weights: --init_checkpoint among the arguments wins, then $GPT2_CKPT, then the default path.
CKPT_ARGS=()
case " $* " in
  *" --init_checkpoint"*) ;;
  *)
    CKPT="${GPT2_CKPT:-}"
    if [ -z "$CKPT" ]; then
      [ -n "$SIZE" ] || die "MODEL=$MODEL is a config.json: set GPT2_CKPT or pass --init_checkpoint"
      CKPT="$REPO/pretrained_checkpoints/$SIZE-pytorch_model.bin"
    fi
    [ -e "$CKPT" ] || die "no pretrained GPT-2 weights at $CKPT: run scripts/download_pretrained_checkpoints.sh ${MODEL#gpt2.}, or set GPT2_CKPT, or pass --init_checkpoint"
    CKPT_ARGS=(--init_checkpoint "$CKPT") ;;
esac

SPEED=(--precision "${PRECISION:-bf16}" --batching "${BATCHING:-dynamic}")
[ -n "${MAX_TOKENS:-}" ] && SPEED+=(--max_tokens "$MAX_TOKENS")
[ -n "${RESIDUAL:-}" ] && SPEED+=(--residual "$RESIDUAL")
[ -n "${PACKED_ATTENTION:-}" ] && SPEED+=(--packed_attention "$PACKED_ATTENTION")
case "${COMPILE:-0}" in
  0|"") [ "${GRAPHS:-1}" = 1 ] && SPEED+=(--cuda_graphs) ;;
  1) SPEED+=(--compile) ;;
  *) SPEED+=(--compile "$COMPILE") ;;  # a torch.compile mode, e.g. reduce-overhead (CUDA graphs)
esac
case "${NPROC:-1}" in ''|*[!0-9]*) die "NPROC must be a number of GPUs, got '$NPROC'" ;; esac
if [ "${NPROC:-1}" -gt 1 ]; then
  LAUNCH=(torchrun --standalone --nproc_per_node="$NPROC" -m gpt2_lora.train)
else
  LAUNCH=("$PYTHON" -m gpt2_lora.train)
fi

set -x
"${LAUNCH[@]}" \
    --train_data "$DIR/train.jsonl" \
    --valid_data "$DIR/valid.jsonl" \
    --train_batch_size 8 \
    --grad_acc 1 \
    --valid_batch_size 4 \
    --seq_len 512 \
    --model_card "$MODEL" \
    ${CKPT_ARGS[@]+"${CKPT_ARGS[@]}"} \
    --platform local \
    --clip 0.0 \
    --lr 0.0002 \
    --weight_decay "$WD" \
    --correct_bias \
    --adam_beta2 0.999 \
    --scheduler linear \
    --warmup_step 500 \
    --max_epoch 5 \
    --save_interval 1000 \
    --lora_dim 4 \
    --lora_alpha 32 \
    --lora_dropout "$DROP" \
    --label_smooth "$SMOOTH" \
    --work_dir "$WORK_DIR" \
    --random_seed 110 \
    "${SPEED[@]}" \
    "$@"
