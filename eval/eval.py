#!/usr/bin/env python3
"""WebNLG / DART scores: a drop-in for WebNLG/GenerationEval ``eval.py`` (BLEU, METEOR, TER).

    python eval/eval.py -R REF_PREFIX -H HYPS -nr N -m bleu,meteor,ter [--json FILE]

REF_PREFIX: the references are REF_PREFIX0 .. REF_PREFIX{N-1} (REF_PREFIX itself when N is 1), one
reference per line, line i of each file belonging to line i of HYPS. Prints GenerationEval's table
(BLEU x100 from multi-bleu-detok.perl, BLEU NLTK, METEOR, TER). Unlike GenerationEval, a final
newline in the files does not add a phantom empty segment. METEOR runs the stock jar when Java is
found and its Python port otherwise (the same scores); ``--meteor python`` takes the Python route
on purpose.
``--json`` writes the full-precision {"bleu", "bleu_nltk", "meteor", "ter"} (bleu x100, the others
fractions; null for a metric not computed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import gpt2_lora  # noqa: F401
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpt2_lora.cli import Parser
from gpt2_lora.errors import UserError, cli
from gpt2_lora.fileio import atomic_write, check_outputs
from gpt2_lora.metrics.generationeval import format_table, parse_metrics, score_files


def build_parser() -> Parser:
    ap = Parser(description="WebNLG/DART evaluation as GenerationEval (BLEU, METEOR, TER)")
    ap.add_argument("-R", "--reference", required=True,
                    help="reference file prefix: PREFIX0..PREFIX{N-1} are read (PREFIX when -nr 1)")
    ap.add_argument("-H", "--hypothesis", required=True, help="hypotheses, one per line")
    ap.add_argument("-lng", "--language", default="en", help="evaluated language (only 'en' is supported)")
    ap.add_argument("-nr", "--num_refs", type=int, default=4, help="number of reference files (default 4)")
    ap.add_argument("-m", "--metrics", default="bleu,meteor,ter",
                    help="comma-separated metrics among bleu,meteor,ter (default: all three)")
    # GenerationEval's chrF++ options, accepted so its command lines run unchanged (chrF++ is not computed)
    ap.add_argument("-nc", "--ncorder", type=int, default=6, help=argparse.SUPPRESS)
    ap.add_argument("-nw", "--nworder", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("-b", "--beta", type=float, default=2.0, help=argparse.SUPPRESS)
    ap.add_argument("--json", metavar="FILE", help="also write the full-precision scores as JSON")
    ap.add_argument("--meteor", choices=("auto", "jar", "python"), default="auto",
                    help="METEOR: the stock jar, its Python port, or auto = the jar when Java is found, else "
                         "Python (same scores)")
    return ap


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.language != "en":
        raise UserError(f"-lng {args.language}: only English ('en') is supported")
    metrics = parse_metrics(args.metrics)
    if args.json:
        refs = [args.reference] if args.num_refs == 1 else [f"{args.reference}{i}" for i in range(max(args.num_refs, 0))]
        check_outputs({"--json": args.json}, {"-H": args.hypothesis, **{f"-R ({r})": r for r in refs}})
    result = score_files(args.reference, args.hypothesis, num_refs=args.num_refs, metrics=metrics,
                         meteor_route=None if args.meteor == "auto" else args.meteor)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(format_table(result, metrics))
    if args.json:
        with atomic_write(args.json) as handle:
            json.dump(result.as_dict(), handle, indent=1)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
