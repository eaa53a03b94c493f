"""One setting run with several random seeds: the mean and sample standard deviation of each score.

The paper reports "the mean over 3 random seeds" (arXiv 2106.09685v2, Appendix D.3) with a ± in every
table; ``aggregate_reports`` turns one report.json per seed into one report of the same shape whose rows
keep ``ours`` (now the mean) and gain ``ours_std`` (ddof=1; null for one run) and ``ours_runs`` (each
seed's value, in the order of the top-level ``seeds``). Runs that would not average meaningfully (another
task, model card, paper row, decoding, checkpoint rule, rows or metrics; a seed given twice) are refused.

    gpt2-lora-report aggregate --seeds 110,111,112 --out_dir DIR [--select best_test] REPORT_JSON...
"""

from __future__ import annotations

import copy
import statistics
import sys
from pathlib import Path
from typing import Sequence

from .cli import Parser
from .errors import UserError
from .fileio import check_outputs
from .report import (PAPER_NUMBERS, RULES, check_report, fmt_number, load_paper_numbers, load_report,
                     metric_label, render_markdown, report_paths, write_report)

_MISSING = object()


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")


def parse_seeds(text: str) -> list[int]:
    """'110,111,112' -> [110, 111, 112] (the --seeds flag)."""
    try:
        seeds = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise UserError(f"--seeds {text}: expected integers separated by commas, e.g. 110,111,112") from None
    return seeds


def _settings(report: dict) -> dict:
    """What must be equal across the runs of one setting, by the name an error gives it."""
    return {"task": report["task"], "model card": report["model_card"],
            "paper row": (report["paper"] or {}).get("row_key"),  # your own data: no paper row
            "decoding": report["meta"].get("decoding"),
            "checkpoint rule": (report.get("selection") or {}).get("rule"),
            "units": report["units"]}


def _row_shape(report: dict) -> list:
    return [(r["metric"], r["split"], r["paper"], r["paper_pm"]) for r in report["rows"]]


def check_runs(reports: Sequence[dict], seeds: Sequence[int]) -> None:
    """One line naming the first run that cannot be averaged with run 1, or the seed given twice."""
    if len(reports) != len(seeds):
        raise UserError(f"--seeds names {_count(len(seeds), 'seed')} for {_count(len(reports), 'report')}: "
                        "give one seed per report")
    if not reports:
        raise UserError("aggregate needs at least one report")
    seen = set()
    for i, (report, seed) in enumerate(zip(reports, seeds), 1):
        where = f"run {i} (seed {seed})"
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise UserError(f"run {i}: the seed must be an integer, got {seed!r}")
        if seed in seen:
            raise UserError(f"--seeds: seed {seed} is given twice")
        seen.add(seed)
        check_report(report, where)
        if "seeds" in report:
            raise UserError(f"{where}: is already an aggregate (of seeds {report['seeds']})")
        for what, value in _settings(report).items():
            first = _settings(reports[0])[what]
            if value != first:
                hint = " (--select picks every seed's epoch by one rule)" if what == "checkpoint rule" else ""
                raise UserError(f"{where}: {what} {value!r} differs from run 1's {first!r}{hint}")
        if _row_shape(report) != _row_shape(reports[0]):
            raise UserError(f"{where}: its rows (metrics, splits or paper values) differ from run 1's")


def _mean_row(rows: list[dict]) -> dict:
    values = [row["ours"] for row in rows]
    complete = all(v is not None for v in values)
    mean = statistics.fmean(values) if complete else None
    scored = [row.get("ours_as_scored") for row in rows]
    row = {**rows[0], "ours": mean,
           "ours_as_scored": statistics.fmean(scored) if complete and None not in scored else None,
           "ours_std": statistics.stdev(values) if complete and len(values) > 1 else None,
           "ours_runs": values, "approximate": any(r["approximate"] for r in rows)}
    row["difference"] = None if mean is None or row["paper"] is None else round(mean - row["paper"], 10)
    return row


def _common_meta(reports: Sequence[dict]) -> dict:
    first = reports[0]["meta"]
    return {k: v for k, v in first.items() if all(r["meta"].get(k, _MISSING) == v for r in reports)}


def _notes(reports: Sequence[dict], seeds: Sequence[int], rows: list[dict]) -> list[str]:
    notes = []
    for report in reports:
        notes += [note for note in report["notes"] if note not in notes]
    for row in rows:
        missing = [str(seed) for seed, value in zip(seeds, row["ours_runs"]) if value is None]
        if missing and len(missing) < len(seeds):
            name = metric_label(row["metric"], row["split"], True)
            notes.append(f"{name}: not computed in the run(s) of seed {', '.join(missing)}, so no mean is given.")
    return notes


def aggregate_reports(reports: Sequence[dict], seeds: Sequence[int]) -> dict:
    """One report over ``reports`` (report.json dicts of one setting, one per seed, in the order of ``seeds``).

    Every row keeps ``ours`` = the mean over the seeds (null if a run lacks it) and gains ``ours_std``
    (sample standard deviation, ddof=1; null for a single run) and ``ours_runs``. The top level gains
    ``seeds`` and ``runs`` (each seed's meta, sources and, for epoch reports, its selection and per-epoch
    table); ``meta`` keeps what all runs share.
    """
    check_runs(reports, seeds)
    rows = [_mean_row([r["rows"][k] for r in reports]) for k in range(len(reports[0]["rows"]))]
    out = copy.deepcopy({k: v for k, v in reports[0].items() if k not in ("selection", "epochs")})
    meta = _common_meta(reports)
    out.update(rows=rows, notes=_notes(reports, seeds, rows), meta=meta, sources={}, seeds=list(seeds))
    out["runs"] = []
    for seed, report in zip(seeds, reports):
        run = {"seed": seed, "meta": {k: v for k, v in report["meta"].items() if k not in meta},
               "sources": dict(report["sources"])}
        for key in ("selection", "epochs"):
            if key in report:
                run[key] = copy.deepcopy(report[key])
        out["runs"].append(run)
    rule = (reports[0].get("selection") or {}).get("rule")
    if rule is not None:
        out["selection"] = {"rule": rule, "epochs": [r["selection"]["epoch"] for r in reports]}
    return out


def render_seed_section(report: dict) -> list[str]:
    """Each seed's value of every metric (the section after the headline table); [] for one run's report."""
    seeds = report.get("seeds")
    if seeds is None:
        return []
    out = ["", "## Runs", "", "| metric | " + " | ".join(f"seed {s}" for s in seeds) + " |",
           "|---|" + "---:|" * len(seeds)]
    for row in report["rows"]:
        cells = [fmt_number(v, row["decimals"] + 1) for v in row["ours_runs"]]
        out.append(f"| {metric_label(row['metric'], row['split'], row['higher_is_better'])} | "
                   + " | ".join(cells) + " |")
    selection = report.get("selection")
    if selection:
        picked = ", ".join(f"seed {s}: epoch {e}" for s, e in zip(seeds, selection["epochs"]))
        out += ["", f"Checkpoints, picked per seed by `{selection['rule']}`: {picked}."]
    return out


# ---------------------------------------------------------------------------------------------
# CLI: gpt2-lora-report aggregate
# ---------------------------------------------------------------------------------------------
def build_aggregate_parser() -> Parser:
    ap = Parser(prog=f"{Path(sys.argv[0]).name} aggregate",
                description="Average one setting's report.json files (one per seed): mean and sample std "
                            "(ddof=1) of every score; report.md shows mean ± std (n runs).")
    ap.add_argument("reports", nargs="+", metavar="REPORT_JSON", help="each seed's report.json, in --seeds order")
    ap.add_argument("--seeds", required=True, help="the runs' random seeds, comma-separated, e.g. 110,111,112")
    ap.add_argument("--out_dir", required=True, help="where report.md and report.json are written")
    ap.add_argument("--select", choices=RULES,
                    help="re-pick each seed's checkpoint from its per-epoch table first (reports built with "
                         "--epochs); without it, each report keeps its own")
    ap.add_argument("--paper_numbers", default=str(PAPER_NUMBERS), help="the paper's values (for --select)")
    return ap


def _refuse_repeated_files(paths: list[str], seeds: list[int]) -> None:
    """One run's report given for two seeds would be averaged with itself (a std of 0 for two runs)."""
    seen: dict[Path, int] = {}
    for path, seed in zip(paths, seeds):
        key = Path(path).resolve()
        if key in seen:
            raise UserError(f"{path}: given for seeds {seen[key]} and {seed}; each seed needs its own run's report.json")
        seen[key] = seed


def aggregate_main(argv: list[str]) -> int:
    from .report_epochs import reselect  # builds on this module's neighbours

    args = build_aggregate_parser().parse_args(argv)
    seeds = parse_seeds(args.seeds)
    if len(seeds) != len(args.reports):
        raise UserError(f"--seeds names {_count(len(seeds), 'seed')} for {_count(len(args.reports), 'report file')}")
    check_outputs({f"--out_dir ({p.name})": p for p in report_paths(args.out_dir)},
                  {f"report file {path}": path for path in args.reports})
    _refuse_repeated_files(args.reports, seeds)
    reports = [load_report(path) for path in args.reports]
    if args.select is not None:
        paper = load_paper_numbers(args.paper_numbers)
        reports = [reselect(r, args.select, paper, where=path) for r, path in zip(reports, args.reports)]
    report = aggregate_reports(reports, seeds)
    for run, path in zip(report["runs"], args.reports):
        run["sources"]["report"] = str(Path(path))
    md_path, json_path = write_report(report, args.out_dir)
    print(render_markdown(report), end="")
    print(f"\nwrote {md_path} and {json_path}")
    return 0
