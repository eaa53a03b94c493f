#!/usr/bin/env bash
# One command from data to report, with the paper's settings:
#   prepare -> train -> beam decode the test set -> decode to text -> score -> report
#
#   scripts/run_pipeline.sh TASK [options] [-- extra gpt2_lora.train flags]
#
# TASK: e2e | webnlg | dart
# Options:
#   --model_card CARD       gpt2.sm | gpt2.md (default) | gpt2.lg, or a path to an HF config.json
#   --init_checkpoint PATH  pretrained GPT-2 weights (default: $GPT2_CKPT, else the file that
#                           scripts/download_pretrained_checkpoints.sh writes)
#   --work_dir DIR          run folder (default: runs/<task>_<card>)
#   --data DIR              data root holding e2e/, webnlg_challenge_2017/, dart/ (default: data)
#   --lora_dim N --lora_alpha N   LoRA rank / alpha (default 4 / 32; --lora_dim 0 = full fine-tuning)
#   --device DEV            cpu, cuda, cuda:N (default: CUDA when present)
#   --beam_precision P      fp32 (default, exact) or bf16
#
# Every stage is skipped when its outputs are newer than its inputs, so a run that was interrupted
# continues where it stopped (training itself resumes from work_dir/resume.pt).
set -euo pipefail
die() { echo "error: $*" >&2; exit 2; }
stage() { echo; echo "=== $* ==="; }
# fresh OUT IN...: OUT exists and is newer than every IN
fresh() { local out=$1; shift; [ -e "$out" ] || return 1; local f; for f in "$@"; do [ "$f" -nt "$out" ] && return 1; done; return 0; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

[ $# -ge 1 ] || die "usage: scripts/run_pipeline.sh e2e|webnlg|dart [options] [-- train flags]"
TASK=$1; shift
case "$TASK" in
  e2e) SUB=e2e ;;
  webnlg) SUB=webnlg_challenge_2017 ;;
  dart) SUB=dart ;;
  -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "TASK must be e2e, webnlg or dart (got '$TASK')" ;;
esac

CARD=gpt2.md; INIT="${GPT2_CKPT:-}"; WORK=""; DATA="$REPO/data"; LORA_DIM=4; LORA_ALPHA=32; DEVICE=""
BEAM_PRECISION=fp32
TRAIN_EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model_card) CARD=${2:?--model_card needs a value}; shift 2 ;;
    --init_checkpoint) INIT=${2:?--init_checkpoint needs a value}; shift 2 ;;
    --work_dir) WORK=${2:?--work_dir needs a value}; shift 2 ;;
    --data) DATA=${2:?--data needs a value}; shift 2 ;;
    --lora_dim) LORA_DIM=${2:?--lora_dim needs a value}; shift 2 ;;
    --lora_alpha) LORA_ALPHA=${2:?--lora_alpha needs a value}; shift 2 ;;
    --device) DEVICE=${2:?--device needs a value}; shift 2 ;;
    --beam_precision) BEAM_PRECISION=${2:?--beam_precision needs a value}; shift 2 ;;
    --) shift; TRAIN_EXTRA=("$@"); break ;;
    *) die "unknown option '$1' (see --help; train flags go after --)" ;;
  esac
done
case "$CARD" in
  gpt2.sm) SIZE=gpt2 ;; gpt2.md) SIZE=gpt2-medium ;; gpt2.lg) SIZE=gpt2-large ;;
  *) [ -f "$CARD" ] || die "--model_card $CARD: not a card (gpt2.sm|gpt2.md|gpt2.lg) nor a config.json"; SIZE="" ;;
esac
if [ -z "$INIT" ]; then
  [ -n "$SIZE" ] && INIT="$REPO/pretrained_checkpoints/$SIZE-pytorch_model.bin"
fi
[ -n "$INIT" ] && [ -e "$INIT" ] || die "no pretrained GPT-2 weights at '${INIT}': run scripts/download_pretrained_checkpoints.sh, set GPT2_CKPT or pass --init_checkpoint"
WORK="${WORK:-$REPO/runs/${TASK}_$(basename "${CARD%.json}")}"
mkdir -p "$WORK"
DEV=(); [ -n "$DEVICE" ] && DEV=(--device "$DEVICE")
DIR="$DATA/$SUB"

stage "1/6 prepare ($TASK)"
if [ ! -f "$DIR/test.jsonl" ] && [ ! -f "$DIR/train.txt" ] && [ ! -f "$DIR/train.json" ] && [ ! -f "$DIR/dart-v1.1.1-full-train.json" ]; then
  die "no $TASK data in $DIR: run scripts/download_data.sh (offline: --mirror DIR), or pass --data"
fi
VOCAB=(); [ -f "$DATA/gpt2/encoder.json" ] && VOCAB=(--vocab "$DATA/gpt2")
if [ -f "$DIR/train.txt" ] || [ -f "$DIR/train.json" ] || [ -f "$DIR/dart-v1.1.1-full-train.json" ]; then
  "$PYTHON" -m gpt2_lora.prepare --task "$TASK" --src "$DIR" --out "$DIR" ${VOCAB[@]+"${VOCAB[@]}"}
fi

stage "2/6 train"
DONE="$WORK/.train_done"
if fresh "$DONE" "$DIR/train.jsonl"; then
  echo "up to date: $(cat "$DONE")"
else
  RESUME=(); [ -f "$WORK/resume.pt" ] && RESUME=(--resume)
  GPT2_CKPT="$INIT" MODEL="$CARD" DATA="$DATA" WORK_DIR="$WORK" \
    bash "$REPO/scripts/train_$TASK.sh" --init_checkpoint "$INIT" --model_card "$CARD" \
      --lora_dim "$LORA_DIM" --lora_alpha "$LORA_ALPHA" ${DEV[@]+"${DEV[@]}"} ${RESUME[@]+"${RESUME[@]}"} \
      ${TRAIN_EXTRA[@]+"${TRAIN_EXTRA[@]}"}
  # the final checkpoint: the highest-numbered model.<step>.pt / .safetensors
  last=$(ls "$WORK" | grep -E '^model\.[0-9]+\.(pt|safetensors)$' | sort -t. -k2,2n | tail -1)
  [ -n "$last" ] || die "training wrote no model.<step> checkpoint in $WORK"
  echo "$WORK/$last" > "$DONE"
fi
CKPT=$(cat "$DONE")
if [ "$LORA_DIM" -gt 0 ]; then
  WEIGHTS=(--init_checkpoint "$CKPT" --base_checkpoint "$INIT")
else
  WEIGHTS=(--init_checkpoint "$CKPT")
fi

# decoding settings: the paper's (beam 10, no-repeat 4, length penalty 0.8; E2E also 0.9)
PENALTIES=(0.8); [ "$TASK" = e2e ] && PENALTIES=(0.8 0.9)
for LP in "${PENALTIES[@]}"; do
  TAG="b10p${LP/./}r4"
  PRED="$WORK/predict.$TAG.jsonl"
  stage "3/6 beam search (length penalty $LP)"
  if fresh "$PRED" "$CKPT" "$DIR/test.jsonl"; then
    echo "up to date: $PRED"
  else
    "$PYTHON" -m gpt2_lora.beam --data "$DIR/test.jsonl" --batch_size 1 --seq_len 512 --eval_len 64 \
      --model_card "$CARD" "${WEIGHTS[@]}" --lora_dim "$LORA_DIM" --lora_alpha "$LORA_ALPHA" \
      --beam 10 --length_penalty "$LP" --no_repeat_ngram_size 4 --repetition_penalty 1.0 --eos_token_id 628 \
      --precision "$BEAM_PRECISION" ${DEV[@]+"${DEV[@]}"} --work_dir "$WORK" --output_file "predict.$TAG.jsonl"
  fi

  OUT="$WORK/eval.$TAG"
  mkdir -p "$OUT"
  stage "4/6 decode to text"
  if [ "$TASK" = e2e ]; then
    if ! fresh "$OUT/pred.txt" "$PRED"; then
      "$PYTHON" -m gpt2_lora.decode ${VOCAB[@]+"${VOCAB[@]}"} --sample_file "$PRED" --input_file "$DIR/test_formatted.jsonl" \
        --output_ref_file "$OUT/ref.txt" --output_pred_file "$OUT/pred.txt"
    fi
  else
    FILTERS=(all); [ "$TASK" = webnlg ] && FILTERS=(all seen unseen)
    for F in "${FILTERS[@]}"; do
      if ! fresh "$OUT/hyp_$F" "$PRED"; then
        "$PYTHON" -m gpt2_lora.decode ${VOCAB[@]+"${VOCAB[@]}"} --sample_file "$PRED" --input_file "$DIR/test_formatted.jsonl" \
          --ref_type "$TASK" --ref_num 6 --filter "$F" --tokenize --lower \
          --output_ref_file "$OUT/refs_$F" --output_pred_file "$OUT/hyp_$F"
      fi
    done
  fi

  stage "5/6 score"
  if [ "$TASK" = e2e ]; then
    fresh "$OUT/scores.json" "$OUT/pred.txt" || \
      "$PYTHON" "$REPO/eval/measure_scores.py" "$OUT/ref.txt" "$OUT/pred.txt" -p --json "$OUT/scores.json"
    SCORES=(--scores "$OUT/scores.json")
  else
    SCORES=()
    for F in "${FILTERS[@]}"; do
      fresh "$OUT/scores_$F.json" "$OUT/hyp_$F" || \
        "$PYTHON" "$REPO/eval/eval.py" -R "$OUT/refs_$F/reference" -H "$OUT/hyp_$F" -nr 6 -m bleu,meteor,ter \
          --json "$OUT/scores_$F.json"
      [ "$TASK" = webnlg ] && SCORES+=(--scores_"$F" "$OUT/scores_$F.json") || SCORES+=(--scores "$OUT/scores_$F.json")
    done
  fi

  stage "6/6 report"
  STEPS=$(basename "$CKPT" | cut -d. -f2)
  "$PYTHON" "$REPO/eval/report.py" --task "$TASK" "${SCORES[@]}" --model_card "$CARD" --out_dir "$OUT" \
    --work_dir "$WORK" --steps "$STEPS"
  cp "$OUT/report.md" "$WORK/report.$TAG.md"; cp "$OUT/report.json" "$WORK/report.$TAG.json"
done
# the headline report is the README's decoding setting (length penalty 0.8)
cp "$WORK/report.b10p08r4.md" "$WORK/report.md"; cp "$WORK/report.b10p08r4.json" "$WORK/report.json"
echo; echo "report: $WORK/report.md"; ls "$WORK"/*.png 2>/dev/null || true
