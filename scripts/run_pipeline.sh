#!/usr/bin/env bash
# One command from data to report, with the paper's settings:
#   prepare -> train -> beam search on the test set -> decode to text -> score -> report
#
#   scripts/run_pipeline.sh TASK [options] [-- extra gpt2_lora.train flags]
#
# TASK: e2e | webnlg | dart
# Options:
#   --model_card CARD       gpt2.sm | gpt2.md (default) | gpt2.lg, or a path to an HF config.json
#   --init_checkpoint PATH  pretrained GPT-2 weights (default: $GPT2_CKPT, else the file that
#                           scripts/download_pretrained_checkpoints.sh writes for the card)
#   --work_dir DIR          run folder (default: runs/<task>_<card>)
#   --data DIR              data root holding e2e/, webnlg_challenge_2017/, dart/ (default: data)
#   --lora_dim N            LoRA rank (default 4; 0 = full fine-tuning)
#   --lora_alpha N          LoRA alpha (default 32)
#   --device DEV            cpu, cuda, cuda:N (default: CUDA when present); on the CPU training runs in
#                           fp32 with the eager step unless PRECISION / GRAPHS / COMPILE say otherwise
#   --beam_precision P      fp32 (default, the parity path) or bf16
#   --overwrite             replace a run of other settings already in the work dir (without it, such a
#                           run is never touched: the pipeline stops and says so)
# Environment: PRECISION, GRAPHS, COMPILE, BATCHING, NPROC as for scripts/train_<task>.sh; PYTHON.
#
# Training uses scripts/train_<task>.sh (the paper's hyper-parameters; flags after -- override them).
# Decoding: beam 10, no-repeat-ngram 4, length penalty 0.8 (E2E also 0.9), EOS 628 as upstream.
# Outputs in the work dir: model.<step>.pt, loss.png, log.jsonl, predict.<tag>.jsonl, eval.<tag>/,
# report.md + report.json (length penalty 0.8) and report.<tag>.{md,json} per decoding setting.
#
# Each stage is skipped ("up to date") when its outputs exist, are newer than its inputs and were made
# by the same command (recorded in <work dir>/.stamps), so an interrupted run continues where it stopped:
# an unfinished training run resumes from <work dir>/resume.pt.
set -euo pipefail
die() { echo "error: $*" >&2; exit 2; }
stage() { echo; echo "=== $* ==="; }
say_run() { printf '+' >&2; printf ' %q' "$@" >&2; echo >&2; "$@"; }
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
usage="usage: scripts/run_pipeline.sh e2e|webnlg|dart [options] [-- train flags] (see --help)"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
help() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; }

[ $# -ge 1 ] || die "$usage"
TASK=$1; shift
case "$TASK" in
  e2e) SUB=e2e ;;
  webnlg) SUB=webnlg_challenge_2017 ;;
  dart) SUB=dart ;;
  -h|--help) help ;;
  *) die "TASK must be e2e, webnlg or dart, got '$TASK' ($usage)" ;;
esac

CARD=gpt2.md; INIT="${GPT2_CKPT:-}"; WORK=""; DATA="$REPO/data"; LORA_DIM=4; LORA_ALPHA=32; DEVICE=""
BEAM_PRECISION=fp32; OVERWRITE=0
TRAIN_EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) help ;;
    --overwrite) OVERWRITE=1; shift ;;
    --) shift; TRAIN_EXTRA=("$@"); break ;;
    --model_card|--init_checkpoint|--work_dir|--data|--lora_dim|--lora_alpha|--device|--beam_precision)
      [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"
      case "$1" in
        --model_card) CARD=$2 ;; --init_checkpoint) INIT=$2 ;; --work_dir) WORK=$2 ;; --data) DATA=$2 ;;
        --lora_dim) LORA_DIM=$2 ;; --lora_alpha) LORA_ALPHA=$2 ;; --device) DEVICE=$2 ;;
        --beam_precision) BEAM_PRECISION=$2 ;;
      esac
      shift 2 ;;
    *) die "unknown option '$1' (see --help; training flags go after --)" ;;
  esac
done
[[ "$LORA_DIM" =~ ^[0-9]+$ ]] || die "--lora_dim must be a whole number >= 0, got '$LORA_DIM'"
[[ "$LORA_ALPHA" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--lora_alpha must be a positive number, got '$LORA_ALPHA'"
case "$BEAM_PRECISION" in fp32|bf16) ;; *) die "--beam_precision must be fp32 or bf16, got '$BEAM_PRECISION'" ;; esac
case "$CARD" in
  gpt2.sm) SIZE=gpt2 ;; gpt2.md) SIZE=gpt2-medium ;; gpt2.lg) SIZE=gpt2-large ;;
  *) [ -f "$CARD" ] || die "--model_card $CARD: not a card (gpt2.sm|gpt2.md|gpt2.lg) nor a config.json file"
     CARD=$(abspath "$CARD"); SIZE="" ;;
esac
if [ -z "$INIT" ] && [ -n "$SIZE" ]; then INIT="$REPO/pretrained_checkpoints/$SIZE-pytorch_model.bin"; fi
[ -n "$INIT" ] || die "--model_card $CARD is a config.json: pass --init_checkpoint (or set GPT2_CKPT)"
[ -e "$INIT" ] || die "no pretrained GPT-2 weights at '$INIT': run scripts/download_pretrained_checkpoints.sh, set GPT2_CKPT or pass --init_checkpoint"
INIT=$(abspath "$INIT"); DATA=$(abspath "$DATA")
WORK=$(abspath "${WORK:-$REPO/runs/${TASK}_$(basename "${CARD%.json}")}")
DIR="$DATA/$SUB"
STAMPS="$WORK/.stamps"
mkdir -p "$STAMPS"
DEV=(); [ -n "$DEVICE" ] && DEV=(--device "$DEVICE")
VOCAB=(); [ -f "$DATA/gpt2/encoder.json" ] && VOCAB=(--vocab "$DATA/gpt2")

# A stage is up to date when its stamp holds the same command (SIG) and every output exists and is
# newer than every input:   up_to_date NAME SIG OUTPUT... -- INPUT...
up_to_date() {
  local name=$1 sig=$2 outs=() out src; shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do outs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  [ -f "$STAMPS/$name" ] && [ "$(cat "$STAMPS/$name")" = "$sig" ] || return 1
  for out in "${outs[@]}"; do
    [ -e "$out" ] || return 1
    for src in "$@"; do [ "$src" -nt "$out" ] && return 1; done
  done
  return 0
}
stamp() { printf '%s\n' "$2" > "$STAMPS/$1.tmp" && mv "$STAMPS/$1.tmp" "$STAMPS/$1"; }
sig_of() { printf '%q ' "$@"; }  # commands are recorded without the interpreter ($PYTHON)

stage "1/6 prepare ($TASK)"
if [ -f "$DIR/train.txt" ] || [ -f "$DIR/train.json" ] || [ -f "$DIR/dart-v1.1.1-full-train.json" ]; then
  # gpt2_lora.prepare keeps its own stamp: it says "up to date" itself when there is nothing to do
  "$PYTHON" -m gpt2_lora.prepare --task "$TASK" --src "$DIR" --out "$DIR" ${VOCAB[@]+"${VOCAB[@]}"}
else
  for f in train valid test; do
    [ -f "$DIR/$f.jsonl" ] || die "no $TASK data in $DIR (no source files, no $f.jsonl): run scripts/download_data.sh (offline: --mirror DIR), or pass --data"
  done
  [ -f "$DIR/test_formatted.jsonl" ] || die "$DIR/test_formatted.jsonl is missing (decoding needs it): run scripts/download_data.sh"
  echo "up to date: $DIR holds encoded data only (no source files to prepare from)"
fi

stage "2/6 train"
# What is trained: --stop_at_step only pauses a run, so it is left out of the signature.
STOP_AT=""; SIG_EXTRA=(); skip_next=0
for a in ${TRAIN_EXTRA[@]+"${TRAIN_EXTRA[@]}"}; do
  if [ $skip_next = 1 ]; then STOP_AT=$a; skip_next=0; continue; fi
  case "$a" in
    --stop_at_step) skip_next=1 ;;
    --stop_at_step=*) STOP_AT=${a#*=} ;;
    *) SIG_EXTRA+=("$a") ;;
  esac
done
TRAIN_SIG=$(sig_of "$TASK" "$CARD" "$INIT" "$DIR" --lora_dim "$LORA_DIM" --lora_alpha "$LORA_ALPHA" \
  ${SIG_EXTRA[@]+"${SIG_EXTRA[@]}"})
TRAIN_INPUTS=("$DIR/train.jsonl" "$DIR/valid.jsonl" "$INIT"); [ -z "$SIZE" ] && TRAIN_INPUTS+=("$CARD")
CKPT=$(cat "$STAMPS/checkpoint" 2>/dev/null || true)
if [ -n "$CKPT" ] && up_to_date train "$TRAIN_SIG" "$CKPT" -- "${TRAIN_INPUTS[@]}"; then
  echo "up to date: $CKPT"
else
  # resume only a run of these settings that has not finished; otherwise start again
  MODE=()
  if [ -f "$WORK/resume.pt" ]; then
    STARTED=$(cat "$STAMPS/train.started" 2>/dev/null || true)
    if [ ! -f "$STAMPS/train" ] && [ "$STARTED" = "$TRAIN_SIG" ]; then
      MODE=(--resume); echo "resuming the unfinished run in $WORK"
    elif [ "$STARTED" != "$TRAIN_SIG" ] && [ "$OVERWRITE" != 1 ]; then
      die "$WORK holds a run of other settings; give another --work_dir, or --overwrite to replace that run"
    else
      MODE=(--overwrite); echo "training again from the start in $WORK (no finished run of these settings and inputs)"
    fi
  fi
  rm -f "$STAMPS/train" "$STAMPS/checkpoint"
  stamp train.started "$TRAIN_SIG"
  # on the CPU: fp32, eager step (the train scripts default to bf16 + CUDA graphs for GPUs)
  if [ "$DEVICE" = cpu ] || { [ -z "$DEVICE" ] && [ "$("$PYTHON" -c 'import torch; print(torch.cuda.is_available())')" = False ]; }; then
    export PRECISION="${PRECISION:-fp32}" COMPILE="${COMPILE:-0}" GRAPHS="${GRAPHS:-0}"
  fi
  GPT2_CKPT="$INIT" MODEL="$CARD" DATA="$DATA" WORK_DIR="$WORK" \
    bash "$REPO/scripts/train_$TASK.sh" --init_checkpoint "$INIT" --model_card "$CARD" \
      --lora_dim "$LORA_DIM" --lora_alpha "$LORA_ALPHA" ${DEV[@]+"${DEV[@]}"} ${MODE[@]+"${MODE[@]}"} \
      ${TRAIN_EXTRA[@]+"${TRAIN_EXTRA[@]}"}
  if [ -n "$STOP_AT" ]; then
    echo "training paused at --stop_at_step $STOP_AT: run the same command without it to continue"
    exit 0
  fi
  # the final checkpoint is the one of the last step in this run's log
  STEP=$("$PYTHON" -c 'import json, sys
print(max(json.loads(l).get("step", 0) for l in open(sys.argv[1]) if l.strip()))' "$WORK/log.jsonl") \
    || die "cannot read the training log $WORK/log.jsonl"
  CKPT=""
  for ext in pt safetensors; do
    f="$WORK/model.$STEP.$ext"
    if [ -f "$f" ] && { [ -z "$CKPT" ] || [ "$f" -nt "$CKPT" ]; }; then CKPT=$f; fi
  done
  [ -n "$CKPT" ] || die "training finished at step $STEP but wrote no $WORK/model.$STEP.pt"
  stamp checkpoint "$CKPT"
  stamp train "$TRAIN_SIG"
fi
STEPS=$(basename "$CKPT" | cut -d. -f2)
if [ "$LORA_DIM" -gt 0 ]; then
  WEIGHTS=(--init_checkpoint "$CKPT" --base_checkpoint "$INIT")   # LoRA-only checkpoint on the base
else
  WEIGHTS=(--init_checkpoint "$CKPT")                             # full fine-tuning: every weight
fi

LORA_DESC="r=$LORA_DIM, alpha=$LORA_ALPHA"; [ "$LORA_DIM" = 0 ] && LORA_DESC="none (full fine-tuning)"
LOSS_CURVE=(); [ -f "$WORK/loss.png" ] && LOSS_CURVE=(loss_curve "$WORK/loss.png")
REPORT_CARD=$CARD  # a card name or a config.json (the report maps it to a paper row)
FILTERS=(all); [ "$TASK" = webnlg ] && FILTERS=(all seen unseen)
PENALTIES=(0.8); [ "$TASK" = e2e ] && PENALTIES=(0.8 0.9)
for LP in "${PENALTIES[@]}"; do
  TAG="b10p${LP/./}r4"
  PRED="$WORK/predict.$TAG.jsonl"
  OUT="$WORK/eval.$TAG"
  mkdir -p "$OUT"

  stage "3/6 beam search ($TAG: beam 10, length penalty $LP, no-repeat 4)"
  CMD=("$PYTHON" -m gpt2_lora.beam --data "$DIR/test.jsonl" --batch_size 1 --seq_len 512 --eval_len 64
       --model_card "$CARD" "${WEIGHTS[@]}" --lora_dim "$LORA_DIM" --lora_alpha "$LORA_ALPHA"
       --beam 10 --length_penalty "$LP" --no_repeat_ngram_size 4 --repetition_penalty 1.0 --eos_token_id 628
       --precision "$BEAM_PRECISION" --work_dir "$WORK" --output_file "predict.$TAG.jsonl")
  if up_to_date "beam.$TAG" "$(sig_of "${CMD[@]:1}")" "$PRED" -- "$CKPT" "$INIT" "$DIR/test.jsonl"; then
    echo "up to date: $PRED"
  else
    say_run "${CMD[@]}" ${DEV[@]+"${DEV[@]}"}
    stamp "beam.$TAG" "$(sig_of "${CMD[@]:1}")"
  fi

  stage "4/6 decode to text ($TAG)"
  for F in "${FILTERS[@]}"; do
    if [ "$TASK" = e2e ]; then
      REF="$OUT/ref.txt"; HYP="$OUT/pred.txt"; CHECK=("$REF" "$HYP")
      CMD=("$PYTHON" -m gpt2_lora.decode ${VOCAB[@]+"${VOCAB[@]}"} --sample_file "$PRED"
           --input_file "$DIR/test_formatted.jsonl" --output_ref_file "$REF" --output_pred_file "$HYP")
    else
      REF="$OUT/refs_$F"; HYP="$OUT/hyp_$F"; CHECK=("$REF/reference0" "$HYP")
      CMD=("$PYTHON" -m gpt2_lora.decode ${VOCAB[@]+"${VOCAB[@]}"} --sample_file "$PRED"
           --input_file "$DIR/test_formatted.jsonl" --ref_type "$TASK" --ref_num 6 --filter "$F"
           --tokenize --lower --output_ref_file "$REF" --output_pred_file "$HYP")
    fi
    if up_to_date "decode.$TAG.$F" "$(sig_of "${CMD[@]:1}")" "${CHECK[@]}" -- "$PRED" "$DIR/test_formatted.jsonl"; then
      echo "up to date: $HYP"
    else
      say_run "${CMD[@]}"
      stamp "decode.$TAG.$F" "$(sig_of "${CMD[@]:1}")"
    fi
  done

  stage "5/6 score ($TAG)"
  SCORES=()
  for F in "${FILTERS[@]}"; do
    if [ "$TASK" = e2e ]; then
      JSON="$OUT/scores.json"; INPUTS=("$OUT/ref.txt" "$OUT/pred.txt")
      CMD=("$PYTHON" "$REPO/eval/measure_scores.py" "$OUT/ref.txt" "$OUT/pred.txt" -p --json "$JSON")
      SCORES+=(--scores "$JSON")
    else
      JSON="$OUT/scores_$F.json"; INPUTS=("$OUT/refs_$F/reference0" "$OUT/hyp_$F")
      CMD=("$PYTHON" "$REPO/eval/eval.py" -R "$OUT/refs_$F/reference" -H "$OUT/hyp_$F" -nr 6
           -m "bleu,meteor,ter" --json "$JSON")
      if [ "$TASK" = webnlg ]; then SCORES+=(--scores_"$F" "$JSON"); else SCORES+=(--scores "$JSON"); fi
    fi
    if up_to_date "score.$TAG.$F" "$(sig_of "${CMD[@]:1}")" "$JSON" -- "${INPUTS[@]}"; then
      echo "up to date: $JSON"
    else
      say_run "${CMD[@]}"
      stamp "score.$TAG.$F" "$(sig_of "${CMD[@]:1}")"
    fi
  done

  stage "6/6 report ($TAG)"
  META=$("$PYTHON" -c 'import json, sys; k = sys.argv[1::2]; v = sys.argv[2::2]
print(json.dumps(dict(zip(k, v))))' model_config "$CARD" init_checkpoint "$INIT" checkpoint "$CKPT" \
    lora "$LORA_DESC" decoding "beam 10, length penalty $LP, no-repeat-ngram 4, EOS 50256/628" \
    data "$DIR" ${LOSS_CURVE[@]+"${LOSS_CURVE[@]}"})
  CMD=("$PYTHON" "$REPO/eval/report.py" --task "$TASK" "${SCORES[@]}" --model_card "$REPORT_CARD"
       --out_dir "$OUT" --work_dir "$WORK" --steps "$STEPS" --meta "$STAMPS/meta.$TAG.json")
  REPORT_INPUTS=(); for ((i = 1; i < ${#SCORES[@]}; i += 2)); do REPORT_INPUTS+=("${SCORES[i]}"); done
  if up_to_date "report.$TAG" "$(sig_of "${CMD[@]:1}") $META" "$OUT/report.md" "$OUT/report.json" \
       "$WORK/report.$TAG.md" "$WORK/report.$TAG.json" \
       -- "${REPORT_INPUTS[@]}"; then
    echo "up to date: $WORK/report.$TAG.md"
  else
    printf '%s\n' "$META" > "$STAMPS/meta.$TAG.json"
    say_run "${CMD[@]}" >/dev/null
    for ext in md json; do
      cp "$OUT/report.$ext" "$WORK/.report.$TAG.$ext.tmp" && mv "$WORK/.report.$TAG.$ext.tmp" "$WORK/report.$TAG.$ext"
    done
    stamp "report.$TAG" "$(sig_of "${CMD[@]:1}") $META"
  fi
done

# the headline report: the README's decoding setting (length penalty 0.8)
for ext in md json; do
  if [ ! -f "$WORK/report.$ext" ] || [ "$WORK/report.b10p08r4.$ext" -nt "$WORK/report.$ext" ]; then
    cp "$WORK/report.b10p08r4.$ext" "$WORK/.report.$ext.tmp" && mv "$WORK/.report.$ext.tmp" "$WORK/report.$ext"
  fi
done
echo
cat "$WORK/report.md"
echo
echo "report: $WORK/report.md (+ report.json$([ "$TASK" = e2e ] && echo '; length penalty 0.9: report.b10p09r4.md'))"
[ -f "$WORK/loss.png" ] && echo "loss curve: $WORK/loss.png"
exit 0
