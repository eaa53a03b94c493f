#!/usr/bin/env bash
# GPU validation runs (issue 7.3; results in BENCHMARKS.md). No pretrained GPT-2 exists on the GPU
# machines, so the chain is shown on what can be run there:
#
#   scripts/gpu_validation.sh quality OUT   full fine-tuning of a randomly initialised GPT-2 sm on E2E
#                                           (then the paper's beam settings), and a LoRA run on top of that
#                                           checkpoint adapting it to WebNLG (plus the same decode without
#                                           LoRA, as the control)
#   scripts/gpu_validation.sh speed OUT     the paper's E2E recipe (GPT-2 M, r=4, batch 8, 5 epochs = 26,290
#                                           steps) on random base weights, wall-clock, then the test-set beam
#   scripts/gpu_validation.sh scaling OUT   the same recipe for $SCALE_STEPS steps on 1 GPU and on 2 GPUs
#                                           (torchrun, same global batch 8), eager DDP step
#   scripts/gpu_validation.sh baselines OUT the per-step baselines to put beside "speed", measured on the
#                                           same GPU: scripts/benchmark_train.py (ours, HF+PEFT fp32/bf16,
#                                           the packed throughput mode) and, when UPSTREAM_SRC names
#                                           microsoft/LoRA's examples/NLG/src (loralib importable), upstream
#                                           gpt2_ft.py for $BASELINE_STEPS steps (it prints ms/batch)
#   scripts/gpu_validation.sh miniature OUT LoRA vs full fine-tuning on a pretrained base, the paper's Table 3 in
#                                           miniature (scripts/miniature.py: pretrains its own GPT-2 sm base;
#                                           E2E; ~8 min, resumable: rerun it to finish); miniature_webnlg OUT:
#                                           the same on WebNLG (a second call). Needs the WebNLG and DART source
#                                           files in data/ besides E2E's (scripts/download_data.sh)
#
# Needs data/e2e and data/webnlg_challenge_2017 prepared (scripts/download_data.sh). Predictions come
# back as predict.*.jsonl; score them with gpt2_lora.decode + eval/measure_scores.py / eval/eval.py
# (Java, nltk), which scripts/run_pipeline.sh also does. QUICK=1 shrinks everything for a CPU rehearsal.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python}"
MODE=${1:?usage: scripts/gpu_validation.sh quality|speed|scaling|baselines OUT}
OUT=${2:?usage: scripts/gpu_validation.sh quality|speed|scaling|baselines OUT}
mkdir -p "$OUT"
case "$MODE" in miniature|miniature_webnlg)  # its own data checks; work kept in runs/miniature for a rerun
  TASK=e2e; [ "$MODE" = miniature_webnlg ] && TASK=webnlg
  SIZE=(--budget full --time_limit "${MINIATURE_LIMIT:-480}" --work "$REPO/runs/miniature")
  [ "${QUICK:-0}" = 1 ] && SIZE=(--budget tiny --device cpu --work "$REPO/runs/miniature_quick")
  exec "$PYTHON" "$REPO/scripts/miniature.py" "$OUT" --task "$TASK" --data "$REPO/data" "${SIZE[@]}" ;;
esac
# the paper's settings come from gpt2_lora/recipes.py; each run below names only what it changes
recipe() { "$PYTHON" -m gpt2_lora.recipes "$@"; }
flags() { local out; out=$(recipe "${@:2}") || exit 2; read -ra "$1" <<< "$out"; }  # flags ARRAY recipe-args
flags E2E_RECIPE train-flags e2e
flags WEBNLG_RECIPE train-flags webnlg
flags DECODING beam-flags e2e
ALPHA=$(recipe value e2e train.lora_alpha); BATCH=$(recipe value e2e train.train_batch_size)
E2E="$REPO/data/$(recipe data-dir e2e)"; WEBNLG="$REPO/data/$(recipe data-dir webnlg)"
for f in "$E2E/train.jsonl" "$E2E/test.jsonl" "$WEBNLG/train.jsonl" "$WEBNLG/test.jsonl"; do
  [ -f "$f" ] || { echo "error: $f missing: run scripts/download_data.sh" >&2; exit 2; }
done

if [ "${QUICK:-0}" = 1 ]; then  # CPU rehearsal: tiny model, a few steps, a slice of the test sets
  echo '{"n_embd": 64, "n_layer": 2, "n_head": 2, "n_positions": 512, "vocab_size": 50257}' > "$OUT/tiny.json"
  SM="$OUT/tiny.json"; MD="$OUT/tiny.json"; DEV=cpu; GRAPHS=(); PREC=fp32
  FT_STEPS=(--max_step 30); LORA_STEPS=(--max_step 20); SPEED_STEPS=(--max_step 20); SCALE_STEPS=${SCALE_STEPS:-10}
  head -40 "$E2E/test.jsonl" > "$OUT/e2e_test.jsonl"; head -40 "$WEBNLG/test.jsonl" > "$OUT/webnlg_test.jsonl"
  E2E_TEST="$OUT/e2e_test.jsonl"; WEBNLG_TEST="$OUT/webnlg_test.jsonl"
  BENCH=(--quick); BENCH_CONFIGS=${BENCH_CONFIGS:-ours fp32,ours bf16+compile packed}
else
  SM=gpt2.sm; MD=gpt2.md; DEV=cuda; GRAPHS=(--cuda_graphs); PREC=bf16
  [ "${NO_GRAPHS:-0}" = 1 ] && GRAPHS=()
  FT_STEPS=(--max_epoch "${FT_EPOCHS:-8}"); LORA_STEPS=(--max_epoch "${LORA_EPOCHS:-5}"); SPEED_STEPS=()
  SCALE_STEPS=${SCALE_STEPS:-600}
  E2E_TEST="$E2E/test.jsonl"; WEBNLG_TEST="$WEBNLG/test.jsonl"
  BENCH=(--data "$E2E/train.jsonl")
fi
# the paper's decoding (the recipe's beam flags); length penalty given per call
beam() {  # beam OUTFILE DATA CARD LORA_DIM LP WEIGHTS...
  local out=$1 data=$2 card=$3 r=$4 lp=$5; shift 5
  "$PYTHON" -m gpt2_lora.beam --data "$data" "${DECODING[@]}" --model_card "$card" --lora_dim "$r" \
    --lora_alpha "$ALPHA" --length_penalty "$lp" --device "$DEV" --work_dir "$OUT" --output_file "$out" "$@"
}
last_ckpt() { ls "$1" | grep -E '^model\.[0-9]+\.pt$' | sort -t. -k2,2n | tail -1 | sed "s|^|$1/|"; }

case "$MODE" in
quality)
  # 1. E2E from scratch, full fine-tuning (no pretrained weights exist here)
  s=$SECONDS
  "$PYTHON" -m gpt2_lora.train --train_data "$E2E/train.jsonl" --valid_data "$E2E/valid.jsonl" "${E2E_RECIPE[@]}" \
    --model_card "$SM" --lora_dim 0 --train_batch_size 32 --valid_batch_size 16 --lr 0.0005 \
    "${FT_STEPS[@]}" --precision "$PREC" "${GRAPHS[@]}" --device "$DEV" \
    --log_interval 500 --eval_interval 100000 --save_interval 100000 --work_dir "$OUT/e2e_full" --overwrite
  echo "e2e full fine-tuning: $((SECONDS - s)) s" | tee -a "$OUT/timings.txt"
  BASE=$(last_ckpt "$OUT/e2e_full")
  PENALTIES=$(recipe length-penalties e2e)
  for lp in $PENALTIES; do
    s=$SECONDS; beam "predict.e2e_full.p${lp/./}.jsonl" "$E2E_TEST" "$SM" 0 "$lp" --init_checkpoint "$BASE"
    echo "e2e beam lp $lp: $((SECONDS - s)) s" | tee -a "$OUT/timings.txt"
  done
  # 2. LoRA (the paper's WebNLG recipe) on top of that checkpoint
  s=$SECONDS
  "$PYTHON" -m gpt2_lora.train --train_data "$WEBNLG/train.jsonl" --valid_data "$WEBNLG/valid.jsonl" \
    "${WEBNLG_RECIPE[@]}" --model_card "$SM" --init_checkpoint "$BASE" "${LORA_STEPS[@]}" \
    --precision "$PREC" "${GRAPHS[@]}" --device "$DEV" --log_interval 500 --eval_interval 100000 \
    --save_interval 100000 --work_dir "$OUT/webnlg_lora" --overwrite
  echo "webnlg lora: $((SECONDS - s)) s" | tee -a "$OUT/timings.txt"
  LP=$(recipe value webnlg headline.length_penalty); R=$(recipe value webnlg train.lora_dim)
  beam predict.webnlg_lora.jsonl "$WEBNLG_TEST" "$SM" "$R" "$LP" --init_checkpoint "$(last_ckpt "$OUT/webnlg_lora")" \
    --base_checkpoint "$BASE"
  beam predict.webnlg_base.jsonl "$WEBNLG_TEST" "$SM" 0 "$LP" --init_checkpoint "$BASE"  # control: no LoRA
  ;;
speed)
  s=$SECONDS
  "$PYTHON" -m gpt2_lora.train --train_data "$E2E/train.jsonl" --valid_data "$E2E/valid.jsonl" "${E2E_RECIPE[@]}" \
    --model_card "$MD" ${SPEED_STEPS[@]+"${SPEED_STEPS[@]}"} --precision "$PREC" "${GRAPHS[@]}" --device "$DEV" \
    --log_interval 1000 --work_dir "$OUT/e2e_speed" --overwrite
  echo "paper E2E recipe, GPT-2 M, random base: $((SECONDS - s)) s" | tee -a "$OUT/timings.txt"
  s=$SECONDS
  "$PYTHON" -c "import torch, sys; sys.path.insert(0, '$REPO'); from gpt2_lora.model import *; \
m = GPT2LMModel(GPT2Config.resolve('$MD')); torch.save(m.state_dict(), '$OUT/random_base.pt')"
  beam predict.e2e_speed.jsonl "$E2E_TEST" "$MD" "$(recipe value e2e train.lora_dim)" \
    "$(recipe value e2e headline.length_penalty)" --init_checkpoint "$(last_ckpt "$OUT/e2e_speed")" \
    --base_checkpoint "$OUT/random_base.pt"
  echo "beam of the test set (incl. loading): $((SECONDS - s)) s" | tee -a "$OUT/timings.txt"
  rm -f "$OUT/random_base.pt"
  ;;
baselines)
  "$PYTHON" "$REPO/scripts/benchmark_train.py" "${BENCH[@]}" --steps "${BENCH_STEPS:-100}" \
    --json "$OUT/bench_train.json" --configs "${BENCH_CONFIGS:-ours bf16 CUDA graph,ours bf16+compile packed,ours bf16+compile packed bf16-residual,ours bf16+compile packed varlen-attention,ours bf16+compile packed bf16-residual varlen-attention,HF+PEFT fp32,HF+PEFT bf16 autocast}" \
    | tee "$OUT/bench_train.txt"
  if [ -n "${UPSTREAM_SRC:-}" ]; then
    s=$SECONDS
    (cd "$UPSTREAM_SRC" && PYTHONPATH="$UPSTREAM_SRC/..${PYTHONPATH:+:$PYTHONPATH}" torchrun --standalone --nproc_per_node=1 \
      gpt2_ft.py --train_data "$E2E/train.jsonl" --valid_data "$E2E/valid.jsonl" "${E2E_RECIPE[@]}" \
      --model_card gpt2.md --platform local --max_step "${BASELINE_STEPS:-120}" --save_interval 100000 \
      --eval_interval 100000 --log_interval 40 --work_dir "$OUT/upstream_ft") > "$OUT/upstream_ft.log" 2>&1 \
      || echo "upstream gpt2_ft.py failed (see $OUT/upstream_ft.log)"
    grep -o "ms/batch *[0-9.]*" "$OUT/upstream_ft.log" | tail -3 | tee -a "$OUT/timings.txt"
    echo "upstream gpt2_ft.py, ${BASELINE_STEPS:-120} steps incl. start-up: $((SECONDS - s)) s" | tee -a "$OUT/timings.txt"
  fi
  ;;
scaling)
  for n in 1 2; do
    s=$SECONDS
    launch=("$PYTHON" -m gpt2_lora.train); [ "$n" -gt 1 ] && launch=(torchrun --standalone --nproc_per_node="$n" -m gpt2_lora.train)
    [ "$DEV" = cpu ] && DEVFLAG=(--device cpu) || DEVFLAG=()
    "${launch[@]}" --train_data "$E2E/train.jsonl" --valid_data "$E2E/valid.jsonl" "${E2E_RECIPE[@]}" \
      --train_batch_size $((BATCH / n)) --model_card "$MD" --max_step "$SCALE_STEPS" --precision "$PREC" \
      ${DEVFLAG[@]+"${DEVFLAG[@]}"} --log_interval 100 --eval_interval 100000 --save_interval 100000 \
      --work_dir "$OUT/scale_$n" --overwrite
    echo "scaling: $n process(es), $SCALE_STEPS steps of global batch $BATCH: $((SECONDS - s)) s" | tee -a "$OUT/timings.txt"
  done
  ;;
*) echo "error: mode must be quality, speed, scaling or baselines (got '$MODE')" >&2; exit 2 ;;
esac
