#!/usr/bin/env bash
# One command from data to report, with the paper's settings (gpt2_lora/recipes.py):
#   prepare -> train -> beam search on the test set -> decode to text -> score -> report
#
#   scripts/run_pipeline.sh TASK [options] [-- extra gpt2_lora.train flags]
#   TASK: e2e | webnlg | dart | custom (your own data: --data DIR [--src ROWS]) | paper (the three tables)
#
# The same as `python -m gpt2_lora.pipeline TASK ...` (see --help there), plus the environment variables
# PRECISION, GRAPHS, COMPILE, BATCHING, MAX_TOKENS, RESIDUAL, PACKED_ATTENTION and NPROC (as the options of
# those names; see scripts/pipeline_env.sh) and PYTHON (the interpreter, default python).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck source=pipeline_env.sh
source "$REPO/scripts/pipeline_env.sh"
[ $# -ge 1 ] || exec "${PYTHON:-python}" -m gpt2_lora.pipeline
exec "${PYTHON:-python}" -m gpt2_lora.pipeline "$1" ${PIPELINE_ENV[@]+"${PIPELINE_ENV[@]}"} "${@:2}"
