#!/usr/bin/env python3
"""E2E NLG Challenge scores: a drop-in for tuetschek/e2e-metrics ``measure_scores.py``.

    python eval/measure_scores.py REFS HYPS [-p] [--json FILE] [-t [-H]] [--sacrebleu]

REFS: references, one per line with a blank line between instances (or CSV/TSV with an MR column);
HYPS: one output per line (or CSV/TSV). Prints BLEU, NIST, METEOR, ROUGE_L, CIDEr as e2e-metrics
does. ``-p`` takes BLEU/NIST from e2e-metrics' Python port (the route the LoRA paper's README runs)
instead of the Perl mteval-v13a numbers. Needs Java for METEOR and for the exact ROUGE_L/CIDEr
tokenisation; without it METEOR is n/a and ROUGE_L/CIDEr are marked as approximations. ``--json``
writes the five full-precision scores and "approximate": the metrics so marked (what
``gpt2_lora.report`` flags). ``--sacrebleu`` adds sacreBLEU and chrF (0-100) with their signatures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

try:
    import gpt2_lora  # noqa: F401
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpt2_lora.cli import Parser
from gpt2_lora.errors import cli
from gpt2_lora.fileio import atomic_write, check_outputs
from gpt2_lora.metrics.e2e import METRICS, e2e_scores, load_data
from gpt2_lora.metrics.sacre import sacrebleu_scores


def build_parser() -> Parser:
    ap = Parser(description="E2E Challenge evaluation (BLEU, NIST, METEOR, ROUGE_L, CIDEr)")
    ap.add_argument("-p", "--python", action="store_true",
                    help="BLEU/NIST from e2e-metrics' Python port (pymteval) instead of the Perl numbers")
    ap.add_argument("-t", "--table", action="store_true", help="print the scores as a line of a TSV table")
    ap.add_argument("-H", "--header", action="store_true", help="print the TSV table header (with -t)")
    ap.add_argument("--json", metavar="FILE", help="also write the full-precision scores as JSON")
    ap.add_argument("--sacrebleu", action="store_true",
                    help="also sacreBLEU and chrF (0-100, sacrebleu's defaults) with their signatures")
    ap.add_argument("ref_file", help="references: one per line, a blank line between instances "
                                     "(or CSV/TSV with MR and reference columns)")
    ap.add_argument("sys_file", help="system outputs: one per line (or CSV/TSV with MR and output columns)")
    return ap


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else "%.4f" % value


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.json:
        check_outputs({"--json": args.json}, {"REFS": args.ref_file, "HYPS": args.sys_file})
    _, refs, hyps = load_data(args.ref_file, args.sys_file)
    result = e2e_scores(refs, hyps, route="python" if args.python else "perl",
                        log=lambda message: print(message, file=sys.stderr, flush=True))
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    scores = result.scores
    sacre = sacrebleu_scores(refs, hyps) if args.sacrebleu else {}
    extra = [name for name in sacre if name != "signatures"]
    if args.table:
        if args.header:
            print("\t".join(["File", *METRICS, *extra]))
        print("\t".join([args.sys_file] + [_fmt(scores[m]) for m in METRICS] + [_fmt(sacre[m]) for m in extra]))
    else:
        print("SCORES:\n==============")
        for metric in METRICS:
            suffix = " (approximate: no Java, Python PTB tokenizer)" if metric in result.approximate else ""
            print(f"{metric}: {_fmt(scores[metric])}{suffix}")
        for metric in extra:
            print(f"{metric}: {_fmt(sacre[metric])} ({sacre['signatures'][metric]})")
        print()
    if args.json:
        with atomic_write(args.json) as handle:
            json.dump({**{m: scores[m] for m in METRICS}, "approximate": list(result.approximate), **sacre},
                      handle, indent=1)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
