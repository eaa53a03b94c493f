#!/usr/bin/env python3
"""Our scores next to the LoRA paper's (markdown + JSON): ``gpt2_lora.report`` as a script.

    python eval/report.py --task e2e --scores scores.json --model_card gpt2.md --out_dir DIR
    python eval/report.py --task webnlg --scores_seen s.json --scores_unseen u.json --scores_all a.json \
        --model_card gpt2.md --out_dir DIR [--meta meta.json] [--steps N] [--wall_clock SECONDS]

Same as the ``gpt2-lora-report`` console script; ``--help`` lists every flag.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import gpt2_lora  # noqa: F401
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpt2_lora.report import main

if __name__ == "__main__":
    sys.exit(main())
