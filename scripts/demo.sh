#!/usr/bin/env bash
# The whole pipeline on built-in data, on the CPU, in a few minutes:
#   synthetic E2E-style data -> a tiny GPT-2 base -> LoRA fine-tuning -> beam search -> decode -> score -> report
#
#   bash scripts/demo.sh [WORK_DIR]        (default: runs/demo)
#
# No pretrained GPT-2 is downloaded: stage 1 trains a tiny randomly initialised GPT-2 (2 layers x 128) on the
# synthetic set as a stand-in base, stage 2 LoRA-tunes it (r=4, alpha=32, the paper's recipe with a shorter
# schedule and a higher learning rate). METEOR and the PTB tokenizer run the jars when Java is present, else
# their Python ports (same scores; the first Python run caches the paraphrase table in ~/.cache/gpt2-lora).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
WORK="${1:-$ROOT/runs/demo}"
mkdir -p "$WORK"
export PYTHONUNBUFFERED=1
start=$SECONDS
step() { echo; echo "=== [$((SECONDS - start)) s] $* ==="; }

# GPT-2's BPE files: data/gpt2 or $GPT2_LORA_VOCAB; else a local mirror; else tiktoken downloads them once.
if [ -z "${GPT2_LORA_VOCAB:-}" ] && [ ! -f data/gpt2/encoder.json ] && [ -f "$ROOT/../shared/data/gpt2/encoder.json" ]; then
  export GPT2_LORA_VOCAB="$ROOT/../shared/data/gpt2"
fi

step "1/7 built-in synthetic E2E-style data"
python -m gpt2_lora.prepare --task synthetic --out "$WORK/data" --synthetic_sizes 2000,100,100
DATA="$WORK/data"
cat > "$WORK/tiny_gpt2.json" <<'EOF'
{"n_embd": 128, "n_layer": 2, "n_head": 4, "n_positions": 256, "n_ctx": 256, "vocab_size": 50257}
EOF
COMMON=(--train_data "$DATA/train.jsonl" --valid_data "$DATA/valid.jsonl" --model_card "$WORK/tiny_gpt2.json"
        --train_batch_size 16 --valid_batch_size 16 --seq_len 256 --weight_decay 0.01 --correct_bias
        --adam_beta2 0.999 --scheduler linear --log_interval 50 --eval_interval 100000 --save_interval 100000
        --label_smooth 0.1 --random_seed 110 --device cpu --overwrite)

step "2/7 stage 1: a tiny GPT-2 base (full fine-tuning from random weights; stands in for pretrained GPT-2)"
python -m gpt2_lora.train "${COMMON[@]}" --lora_dim 0 --lr 0.001 --warmup_step 20 --max_epoch 1 \
  --work_dir "$WORK/base"
BASE=$(ls "$WORK/base" | grep -E '^model\.[0-9]+\.pt$' | sort -t. -k2,2n | tail -1)

step "3/7 stage 2: LoRA fine-tuning on top of it (r=4, alpha=32, LoRA dropout 0.1)"
python -m gpt2_lora.train "${COMMON[@]}" --init_checkpoint "$WORK/base/$BASE" --lora_dim 4 --lora_alpha 32 \
  --lora_dropout 0.1 --lr 0.002 --warmup_step 10 --max_step 80 --work_dir "$WORK/lora"
LORA=$(ls "$WORK/lora" | grep -E '^model\.[0-9]+\.pt$' | sort -t. -k2,2n | tail -1)
LORA_STEPS=${LORA#model.}; LORA_STEPS=${LORA_STEPS%.pt}

step "4/7 beam search on the test set (beam 10, length penalty 0.8, no-repeat 4, EOS {50256, 628})"
python -m gpt2_lora.beam --data "$DATA/test.jsonl" --batch_size 1 --seq_len 256 --eval_len 64 \
  --model_card "$WORK/tiny_gpt2.json" --init_checkpoint "$WORK/lora/$LORA" --base_checkpoint "$WORK/base/$BASE" \
  --lora_dim 4 --lora_alpha 32 --beam 10 --length_penalty 0.8 --no_repeat_ngram_size 4 --repetition_penalty 1.0 \
  --eos_token_id 628 --device cpu --work_dir "$WORK" --output_file predict.jsonl

step "5/7 decode to text"
python -m gpt2_lora.decode --sample_file "$WORK/predict.jsonl" --input_file "$DATA/test_formatted.jsonl" \
  --output_ref_file "$WORK/ref.txt" --output_pred_file "$WORK/pred.txt"
echo "first outputs:"; head -3 "$WORK/pred.txt"

step "6/7 score (E2E metrics, the paper's -p route)"
python eval/measure_scores.py "$WORK/ref.txt" "$WORK/pred.txt" -p --json "$WORK/scores.json"

step "7/7 report"
python eval/report.py --task e2e --scores "$WORK/scores.json" --model_card gpt2.sm --out_dir "$WORK" \
  --work_dir "$WORK/lora" --steps "$LORA_STEPS" --wall_clock "$((SECONDS - start))" >/dev/null
cat "$WORK/report.md"
echo
echo "demo finished in $((SECONDS - start)) s; everything is in $WORK (loss curves: $WORK/base/loss.png, $WORK/lora/loss.png)"
