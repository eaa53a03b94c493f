#!/usr/bin/env python3
"""Time the E2E scorer end to end (``python eval/measure_scores.py REFS HYPS [-p] --meteor ROUTE``), and METEOR alone.

    python scripts/benchmark_scoring.py            # full E2E test set (630 MRs, 4,693 refs), every route
    python scripts/benchmark_scoring.py --quick    # e2e-metrics' 10-MR example
    python scripts/benchmark_scoring.py --meteor python --repeat 5 --meteor-only
    python scripts/benchmark_scoring.py --official ../e2e-metrics --official-python /path/to/python

Routes: ``--meteor jar`` (the official jars: METEOR and the PTB tokenizer, cold JVMs) and ``--meteor
python`` (their Python ports, no JVM); by default both when Java is found, else python. Each run is a
fresh process; the best of ``--repeat`` runs is kept (the machine may be shared). ``--meteor-only``
also times METEOR by itself: a fresh process tokenises the test set first (not timed), then opens the
scorer (JVM start and paraphrase table load, or the Python resources and paraphrase cache) and scores
the corpus. Inputs default to ../shared/metrics-cases/e2e (tgen, the official baseline). With
``--official`` the same files are also scored by an e2e-metrics checkout for a side-by-side time.
Budgets on a 2-core machine: 20 s per full-test-set run, 5 s for METEOR of the test set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(os.environ.get("GPT2_LORA_SHARED", ROOT.parent / "shared")) / "metrics-cases" / "e2e"
BUDGET_S = 20.0
METEOR_BUDGET_S = 5.0
# the children run this checkout's package, whatever else is installed
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def run_ours(refs: Path, hyps: Path, python_route: bool, meteor: str) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.json"
        cmd = [sys.executable, str(ROOT / "eval" / "measure_scores.py"), str(refs), str(hyps),
               "--json", str(out), "--meteor", meteor] + (["-p"] if python_route else [])
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        return time.perf_counter() - start, json.loads(out.read_text())


def run_official(checkout: Path, python: str, refs: Path, hyps: Path, python_route: bool) -> float:
    cmd = [python, "measure_scores.py", str(refs), str(hyps)] + (["-p"] if python_route else [])
    start = time.perf_counter()
    subprocess.run(cmd, cwd=checkout, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def meteor_child(refs: Path, hyps: Path, route: str) -> int:
    """(In a fresh process) tokenise, then time opening the METEOR scorer and scoring the corpus."""
    from gpt2_lora.metrics.e2e import load_data
    from gpt2_lora.metrics.ptb_tokenizer import PTBTokenizer

    _, groups, outputs = load_data(refs, hyps)
    tokens = PTBTokenizer(route="python").tokenize([r for g in groups for r in g] + list(outputs))
    tok_refs, start = [], 0
    for group in groups:
        tok_refs.append(tokens[start:start + len(group)])
        start += len(group)
    wall, cpu = time.perf_counter(), time.process_time()
    from gpt2_lora.metrics.meteor import open_meteor

    scorer, _ = open_meteor("coco", route=route)
    with scorer:
        value = scorer.corpus_score(tokens[start:], tok_refs)
    print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "METEOR": value}))
    return 0


def time_meteor_only(refs: Path, hyps: Path, route: str, repeat: int) -> tuple[list[float], dict]:
    runs = []
    for _ in range(repeat):
        cmd = [sys.executable, __file__, "--meteor-child", route, "--refs", str(refs), "--hyps", str(hyps)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=ENV).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return sorted(r["wall"] for r in runs), min(runs, key=lambda r: r["wall"])


def _inputs(args) -> tuple[Path, Path]:
    if args.quick:
        return (args.refs or CASES / "example-inputs" / "devel-conc.txt",
                args.hyps or CASES / "example-inputs" / "baseline-output.txt")
    return args.refs or CASES / "test" / "references_multi.txt", args.hyps or CASES / "test" / "systems" / "tgen.txt"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="score the 10-MR example instead of the test set")
    ap.add_argument("--refs", type=Path, help="references file (default: the E2E test set)")
    ap.add_argument("--hyps", type=Path, help="outputs file (default: tgen's test-set outputs)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per route (the best time is kept)")
    ap.add_argument("--meteor", choices=("jar", "python", "both"), default=None,
                    help="which METEOR/tokenizer route(s) to time [both when Java is found, else python]")
    ap.add_argument("--meteor-only", action="store_true", help="also time METEOR alone, per route")
    ap.add_argument("--meteor-child", choices=("jar", "python"), help=argparse.SUPPRESS)
    ap.add_argument("--official", type=Path, help="an e2e-metrics checkout to time beside ours")
    ap.add_argument("--official-python", default=sys.executable, help="python for the official scorer")
    args = ap.parse_args(argv)

    refs, hyps = _inputs(args)
    for path in (refs, hyps):
        if not path.is_file():
            print(f"error: input not found: {path}", file=sys.stderr)
            return 2
    if args.meteor_child:
        return meteor_child(refs, hyps, args.meteor_child)
    choice = args.meteor or ("both" if shutil.which("java") else "python")
    routes = ("jar", "python") if choice == "both" else (choice,)

    rows = []
    for meteor in routes:
        for python_route in (False, True):
            label = f"{meteor}, " + ("-p (pymteval)" if python_route else "default (Perl rules)")
            times, scores = [], {}
            for _ in range(max(1, args.repeat)):
                seconds, scores = run_ours(refs, hyps, python_route, meteor)
                times.append(seconds)
            official = (run_official(args.official, args.official_python, refs, hyps, python_route)
                        if args.official and meteor == routes[0] else None)
            rows.append((label, min(times), official, scores))

    print(f"\nE2E scoring: {refs.name} + {hyps.name} ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    print(f"{'METEOR route, BLEU route':<32}{'ours s':>8}{'official s':>12}  BLEU    NIST    METEOR  ROUGE_L CIDEr")
    for label, seconds, official, s in rows:
        fmt = lambda v: "n/a   " if v is None else f"{v:.4f}"  # noqa: E731
        off = f"{official:.1f}" if official is not None else "-"
        print(f"{label:<32}{seconds:>8.1f}{off:>12}  {fmt(s['BLEU'])}  {fmt(s['NIST'])}  "
              f"{fmt(s['METEOR'])}  {fmt(s['ROUGE_L'])}  {fmt(s['CIDEr'])}")
    if not args.quick:
        worst = max(r[1] for r in rows)
        print(f"budget {BUDGET_S:.0f} s per run: {'met' if worst <= BUDGET_S else 'MISSED'} (slowest {worst:.1f} s)")
    if args.meteor_only:
        print("\nMETEOR alone (fresh process; scorer start + corpus score; tokenisation not timed)")
        for route in routes:
            walls, best = time_meteor_only(refs, hyps, route, max(1, args.repeat))
            verdict = "" if args.quick else (" met" if walls[0] <= METEOR_BUDGET_S else " MISSED")
            print(f"  {route:<7} best {walls[0]:.2f} s, median {walls[len(walls) // 2]:.2f} s wall "
                  f"(process CPU {best['cpu']:.2f} s); METEOR {best['METEOR']:.10f}; "
                  f"budget {METEOR_BUDGET_S:.0f} s:{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
