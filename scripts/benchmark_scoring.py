#!/usr/bin/env python3
"""Time the E2E scorer end to end (``python eval/measure_scores.py REFS HYPS [-p]``, cold JVMs).

    python scripts/benchmark_scoring.py            # full E2E test set (630 MRs, 4,693 refs), both routes
    python scripts/benchmark_scoring.py --quick    # e2e-metrics' 10-MR example, both routes
    python scripts/benchmark_scoring.py --official ../e2e-metrics --official-python /path/to/python

Inputs default to ../shared/metrics-cases/e2e (tgen, the official baseline, on the test set). With
``--official`` the same files are also scored by an e2e-metrics checkout (its jars in place) for a
side-by-side time. The budget is 20 s per full-test-set run on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(os.environ.get("GPT2_LORA_SHARED", ROOT.parent / "shared")) / "metrics-cases" / "e2e"
BUDGET_S = 20.0


def run_ours(refs: Path, hyps: Path, python_route: bool) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.json"
        cmd = [sys.executable, str(ROOT / "eval" / "measure_scores.py"), str(refs), str(hyps),
               "--json", str(out)] + (["-p"] if python_route else [])
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start, json.loads(out.read_text())


def run_official(checkout: Path, python: str, refs: Path, hyps: Path, python_route: bool) -> float:
    cmd = [python, "measure_scores.py", str(refs), str(hyps)] + (["-p"] if python_route else [])
    start = time.perf_counter()
    subprocess.run(cmd, cwd=checkout, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="score the 10-MR example instead of the test set")
    ap.add_argument("--refs", type=Path, help="references file (default: the E2E test set)")
    ap.add_argument("--hyps", type=Path, help="outputs file (default: tgen's test-set outputs)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per route (the best time is kept)")
    ap.add_argument("--official", type=Path, help="an e2e-metrics checkout to time beside ours")
    ap.add_argument("--official-python", default=sys.executable, help="python for the official scorer")
    args = ap.parse_args(argv)

    if args.quick:
        refs = args.refs or CASES / "example-inputs" / "devel-conc.txt"
        hyps = args.hyps or CASES / "example-inputs" / "baseline-output.txt"
    else:
        refs = args.refs or CASES / "test" / "references_multi.txt"
        hyps = args.hyps or CASES / "test" / "systems" / "tgen.txt"
    for path in (refs, hyps):
        if not path.is_file():
            print(f"error: input not found: {path}", file=sys.stderr)
            return 2

    rows = []
    for python_route in (False, True):
        route = "-p (pymteval)" if python_route else "default (Perl rules)"
        times, scores = [], {}
        for _ in range(max(1, args.repeat)):
            seconds, scores = run_ours(refs, hyps, python_route)
            times.append(seconds)
        official = (run_official(args.official, args.official_python, refs, hyps, python_route)
                    if args.official else None)
        rows.append((route, min(times), official, scores))

    print(f"\nE2E scoring: {refs.name} + {hyps.name}")
    print(f"{'route':<22}{'ours s':>8}{'official s':>12}  BLEU    NIST    METEOR  ROUGE_L CIDEr")
    for route, seconds, official, s in rows:
        fmt = lambda v: "n/a   " if v is None else f"{v:.4f}"  # noqa: E731
        off = f"{official:.1f}" if official is not None else "-"
        print(f"{route:<22}{seconds:>8.1f}{off:>12}  {fmt(s['BLEU'])}  {fmt(s['NIST'])}  "
              f"{fmt(s['METEOR'])}  {fmt(s['ROUGE_L'])}  {fmt(s['CIDEr'])}")
    if not args.quick:
        worst = max(r[1] for r in rows)
        print(f"budget {BUDGET_S:.0f} s per run: {'met' if worst <= BUDGET_S else 'MISSED'} "
              f"(slowest {worst:.1f} s, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
