#!/usr/bin/env python3
"""LoRA vs full fine-tuning on a pretrained base: the paper's Table 3 in miniature (gpt2_lora/miniature.py).

    python scripts/miniature.py OUT [--budget full|tiny] [--task e2e|webnlg|all] [--device cuda] [--time_limit S]
    python scripts/miniature.py OUT2 --rescore OUT     # score OUT's stored outputs here (Java, nltk)

See --help, README.md and BENCHMARKS.md ("LoRA vs full fine-tuning on a pretrained base").
"""

import sys
from pathlib import Path

if __name__ == "__main__":  # spawned scoring workers import this file as __mp_main__: keep it light
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gpt2_lora.miniature import main

    sys.exit(main())
