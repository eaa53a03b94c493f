# Sourced by run_pipeline.sh and train_task.sh: the environment variables they have always read, as
# gpt2_lora.pipeline options in PIPELINE_ENV (options given on the command line come later and win).
#   PRECISION, BATCHING, MAX_TOKENS, RESIDUAL, PACKED_ATTENTION, NPROC: the option of that name
#   GRAPHS=1|0: --cuda_graphs | --no_cuda_graphs;  COMPILE=1 or a torch.compile mode: --compile [MODE]
PIPELINE_ENV=()
for var in PRECISION BATCHING MAX_TOKENS RESIDUAL PACKED_ATTENTION NPROC; do
  if [ -n "${!var:-}" ]; then PIPELINE_ENV+=("--$(echo "$var" | tr '[:upper:]' '[:lower:]')" "${!var}"); fi
done
case "${COMPILE:-0}" in
  0|"") case "${GRAPHS:-}" in 1) PIPELINE_ENV+=(--cuda_graphs) ;; 0) PIPELINE_ENV+=(--no_cuda_graphs) ;; esac ;;
  1) PIPELINE_ENV+=(--compile) ;;
  *) PIPELINE_ENV+=(--compile "$COMPILE") ;;
esac
