#!/usr/bin/env python3
"""Compare METEOR 1.5 in Python with the jar, segment by segment, on the shared metric cases.

    python scripts/compare_meteor.py                 # every case: E2E example + test systems, WebNLG
    python scripts/compare_meteor.py --pairs         # also each hypothesis against each single reference
    python scripts/compare_meteor.py --cases tgen webnlg --show 20

For each case the jar (``-stdio``, the coco build for E2E, the stock build with ``-r 6`` for WebNLG)
and the Python route score the same tokenised text; every segment whose statistics line
(``tstLen refLen tstFn refFn`` + per-module matches + ``chunks tstMatched refMatched``) differs is
listed, with both lines, and the corpus scores are printed side by side. Needs Java and
``pycocoevalcap==1.2``. Exit status 1 when any segment differs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpt2_lora.metrics import generationeval as ge  # noqa: E402
from gpt2_lora.metrics import meteor_stats  # noqa: E402
from gpt2_lora.metrics.e2e import load_data  # noqa: E402
from gpt2_lora.metrics.meteor import Meteor  # noqa: E402
from gpt2_lora.metrics.meteor_python import PythonMeteor  # noqa: E402
from gpt2_lora.metrics.ptb_tokenizer import PTBTokenizer  # noqa: E402

CASES = Path(os.environ.get("GPT2_LORA_SHARED", ROOT.parent / "shared")) / "metrics-cases"
E2E_SYSTEMS = ("tgen", "sheff1", "dangnt")
ALL_CASES = ("example", *E2E_SYSTEMS, "webnlg")


def e2e_case(name: str):
    """(tokenised hypotheses, tokenised reference groups) as the E2E scorer feeds METEOR."""
    base = CASES / "e2e"
    if name == "example":
        refs_path = base / "example-inputs" / "devel-conc.txt"
        hyps_path = base / "example-inputs" / "baseline-output.txt"
    else:
        refs_path, hyps_path = base / "test" / "references_multi.txt", base / "test" / "systems" / f"{name}.txt"
    _, refs, hyps = load_data(refs_path, hyps_path)
    tokens = PTBTokenizer().tokenize([r for group in refs for r in group] + list(hyps))
    groups, start = [], 0
    for group in refs:
        groups.append(tokens[start:start + len(group)])
        start += len(group)
    return tokens[start:], groups


def webnlg_case():
    """GenerationEval's METEOR input: nltk-tokenised text, six references per segment."""
    layout = CASES / "generationeval" / "webnlg2017_Baseline_nofinalnewline"
    hyps, refs = ge.read_inputs(layout / "references" / "reference", layout / "hypothesis", 6)
    return ge.word_tokenize(hyps), [ge.word_tokenize(r) for r in refs]


def compare(label: str, variant: str, hyps, refs, num_refs, show: int) -> int:
    with Meteor(variant, num_refs=num_refs) as jar:
        started = time.perf_counter()
        jar_lines = jar.stats(hyps, refs)
        jar_score = jar.corpus_score(hyps, refs)
        jar_s = time.perf_counter() - started
    started = time.perf_counter()
    values = PythonMeteor(variant, num_refs=num_refs).stats_values(hyps, refs)
    py_s = time.perf_counter() - started
    py_lines = [meteor_stats.format_stats(v) for v in values]
    differing = [i for i, (a, b) in enumerate(zip(jar_lines, py_lines)) if a != b]
    print(f"{label}: {len(hyps)} segments, {len(differing)} differ "
          f"({100 * (1 - len(differing) / len(hyps)):.3f}% equal); corpus METEOR jar {jar_score:.12f} "
          f"python {meteor_stats.corpus_score(values):.12f}; {jar_s:.1f} s jar, {py_s:.1f} s python")
    for i in differing[:show]:
        print(f"  segment {i + 1}: {hyps[i]!r}\n    jar    {jar_lines[i]}\n    python {py_lines[i]}")
    return len(differing)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", choices=ALL_CASES, default=list(ALL_CASES))
    ap.add_argument("--pairs", action="store_true",
                    help="also align each hypothesis with each reference on its own (every alignment, not only "
                         "the best reference's)")
    ap.add_argument("--show", type=int, default=50, help="differing segments to print per case")
    args = ap.parse_args(argv)
    if not CASES.is_dir():
        print(f"error: metric cases not found: {CASES}", file=sys.stderr)
        return 2
    differing = 0
    for name in args.cases:
        variant, num_refs = ("stock", 6) if name == "webnlg" else ("coco", None)
        hyps, refs = webnlg_case() if name == "webnlg" else e2e_case(name)
        differing += compare(name, variant, hyps, refs, num_refs, args.show)
        if args.pairs:
            pair_hyps = [h for h, group in zip(hyps, refs) for _ in group[:num_refs]]
            pair_refs = [[r] for group in refs for r in group[:num_refs]]
            differing += compare(f"{name} (single references)", variant, pair_hyps, pair_refs, None, args.show)
    print("all equal" if not differing else f"{differing} differing segments in all")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
