"""The paper-vs-ours report: our scores next to the LoRA paper's GPT-2 rows, as markdown and JSON.

    gpt2-lora-report --task e2e --scores e2e_scores.json --model_card gpt2.md --out_dir runs/e2e
    gpt2-lora-report --task webnlg --scores_seen s.json --scores_unseen u.json --scores_all a.json \\
        --model_card gpt2.md --out_dir runs/webnlg [--meta meta.json] [--steps N] [--wall_clock SECONDS]
    gpt2-lora-report --task e2e --epochs epochs.json --select best_test --model_card gpt2.md --out_dir DIR
    gpt2-lora-report --task custom --scores scores.json --model_card gpt2.md --out_dir DIR    (your own data)
    gpt2-lora-report aggregate --seeds 110,111,112 --out_dir DIR RUN110/report.json RUN111/report.json ...
    gpt2-lora-report paper --out_dir DIR E2E/report.json DART/report.json WEBNLG/report.json ...

Score files are what our scorers write with ``--json``: ``eval/measure_scores.py`` (E2E: BLEU, NIST,
METEOR, ROUGE_L, CIDEr; fractions as e2e-metrics prints them) and ``eval/eval.py`` (WebNLG/DART: bleu
x100, meteor, ter). The paper's values live in ``gpt2_lora/paper_numbers.json`` with their table numbers;
ours are converted to the paper's units there ("scale"). Writes ``report.md`` and ``report.json`` into
``--out_dir`` and prints the markdown. This module only compares numbers; it computes no metric.

The paper's protocol (mean over 3 seeds, each run taken from its best epoch) is built on top of this
module: ``report_epochs`` (a per-epoch table and the checkpoint rule), ``report_seeds`` (the mean and
sample standard deviation over seeds) and ``paper_report`` (Tables 3, 13 and 14 in one report).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from .cli import Parser
from .errors import UserError, cli
from .fileio import atomic_files, check_outputs
from .report_inputs import (OWN_TASK, PAPER_NUMBERS, REPORT_TASKS, RULES, SPLITS, TASKS, check_report,  # noqa: F401
                            load_paper_numbers, load_report, load_scores, model_size, parse_scores, read_json)


# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------
def _split_label(split: str | None) -> str:
    return "" if split is None else f" ({split})"


def task_numbers(paper: dict, task: str) -> dict:
    """The paper's numbers for one task (``paper_numbers.json``'s ``tasks[task]``), or a one-line error; for
    your own data, the metrics without paper rows (``report_own.own_numbers``)."""
    if task == OWN_TASK:
        from .report_own import own_numbers  # builds on this module
        return own_numbers(paper)
    if task not in TASKS:
        raise UserError(f"--task {task}: expected one of {', '.join(REPORT_TASKS)}")
    if task not in paper["tasks"]:
        raise UserError(f"the paper numbers file has no numbers for --task {task}")
    return paper["tasks"][task]


def paper_units(task: str, metric: str, spec: dict, raw: float | None) -> float | None:
    """One of our scores (in the scorer's own units) in the paper's units, after checking its range."""
    if raw is None:
        return None
    key = spec["score_key"]
    if spec["scale"] != 1 and raw > 1:
        raise UserError(f"{task} {key} = {raw} is not a fraction: the scores file should hold the "
                        f"scorer's own units (e.g. BLEU 0.70, not 70.0)")
    if raw < 0 or (metric == "METEOR" and raw > 1) or (metric == "BLEU" and raw > 100):
        raise UserError(f"{task} {key} = {raw} is outside the metric's range (BLEU 0-100 as eval.py "
                        f"writes it, METEOR 0-1, nothing negative)")
    return raw * spec["scale"]


def ordered_splits(splits) -> list:
    """Splits in the paper's U/S/A order (None, for E2E/DART, first)."""
    return sorted(splits, key=lambda s: -1 if s is None else SPLITS.index(s))


def build_report(task: str, scores: dict, model_card: str, paper: dict | None = None,
                 paper_row: str | None = None, meta: dict | None = None,
                 sources: dict | None = None) -> dict:
    """The report as a JSON-ready dict.

    ``scores``: {None: scores} for E2E/DART, {"unseen"|"seen"|"all": scores} for WebNLG (each as
    ``load_scores`` returns it). ``paper_row`` ('M' or 'L') defaults to the model card's size; a GPT-2
    small run (no paper row) is compared with the M row, and the report says so. ``task`` "custom" (your
    own data) gives a report without a paper column (``report_own``): ``"paper"`` and each row's paper
    values are null, and a note says why.
    """
    if task not in REPORT_TASKS:  # before reading the paper numbers file
        raise UserError(f"--task {task}: expected one of {', '.join(REPORT_TASKS)}")
    paper = paper if paper is not None else load_paper_numbers()
    if task == OWN_TASK:  # your own data: no paper row to compare with
        from .report_own import build_own_report  # builds on this module
        return build_own_report(scores, model_card, paper, meta, sources)
    numbers = task_numbers(paper, task)
    size = model_size(model_card)
    row_key = (paper_row or ("M" if size in ("S", "custom") else size)).upper()
    if row_key not in numbers["rows"]:
        raise UserError(f"--paper_row {paper_row}: the paper's {numbers['table']} has rows "
                        f"{', '.join(numbers['rows'])}")
    row = numbers["rows"][row_key]
    notes = []
    if size == "S":
        notes.append("The paper reports no GPT-2 small (gpt2.sm) results: the comparison is with its "
                     f"{row['label']} row, for reference only.")
    elif size == "custom":
        notes.append(f"Model {model_card} is not one of GPT-2's sizes: the comparison is with the paper's "
                     f"{row['label']} row, for reference only.")
    elif size != row_key:
        notes.append(f"Model card {model_card} is compared with the paper's {row['label']} row (as asked).")

    lines = []
    for metric, spec in numbers["metrics"].items():
        for split in ordered_splits(scores):
            split_scores = scores[split]
            key = spec["score_key"]
            raw = split_scores[key]
            ours = paper_units(task, metric, spec, raw)
            reference = (row["values"][split] if split is not None else row["values"])[metric]
            lines.append({
                "metric": metric, "split": split, "ours": ours, "ours_as_scored": raw,
                "paper": reference["value"], "paper_pm": reference["pm"],
                "difference": None if ours is None else round(ours - reference["value"], 10),
                "decimals": spec["decimals"], "higher_is_better": spec["higher_is_better"],
                "approximate": key.lower() in {k.lower() for k in split_scores.get("approximate") or []},
            })
    notes += _approximation_notes(task, lines, scores)
    return {
        "task": task, "task_name": numbers["name"], "model_card": model_card,
        "paper": {"citation": f"{paper['paper']['title']} (arXiv {paper['paper']['arxiv']})",
                  "table": numbers["table"], "row": row["label"], "row_key": row_key,
                  "trainable_params": row["trainable_params"], "scorer": numbers["scorer"]},
        "units": numbers.get("units", ""),
        "rows": lines, "notes": notes, "meta": dict(meta or {}), "sources": dict(sources or {}),
    }


def _approximation_notes(task: str, lines: list[dict], scores: dict) -> list[str]:
    """Notes on what was not computed, and on what the scores file's own "approximate" list flags (the
    scorers know which metrics fell back to an approximation). Only an E2E file from before that list
    existed is read the old way: a missing METEOR meant no Java."""
    notes = []
    missing = sorted({f"{l['metric']}{_split_label(l['split'])}" for l in lines if l["ours"] is None})
    if missing:
        notes.append(f"Not computed: {', '.join(missing)} (the scorer reported it as unavailable; for "
                     "METEOR that usually means Java is missing).")
    for split_scores in scores.values():
        if task == "e2e" and split_scores.get("approximate", []) is None and split_scores["METEOR"] is None:
            # an older scores file without the list: its scorer left METEOR out only without Java, which
            # also made ROUGE-L and CIDEr use the Python tokenizer
            for line in lines:
                line["approximate"] = line["approximate"] or line["metric"] in ("ROUGE-L", "CIDEr")
    flagged = sorted({l["metric"] for l in lines if l["approximate"]}, key=[l["metric"] for l in lines].index)
    if flagged and task == "e2e":
        notes.append(f"Approximate: {', '.join(flagged)} were computed without Java, so the text was tokenised "
                     "by a Python approximation of Stanford CoreNLP's PTBTokenizer instead of the jar; they "
                     "may differ slightly from the official scorer.")
    elif flagged:
        notes.append(f"Approximate: {', '.join(flagged)} (flagged by the scorer).")
    return notes


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def fmt_number(value: float | None, decimals: int, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def runs_label(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def fmt_ours(line: dict, decimals: int) -> str:
    """Our value: one run's score, or ``mean ± std (n runs)`` for a report aggregated over seeds."""
    text = fmt_number(line["ours"], decimals)
    if "ours_runs" in line and line["ours"] is not None:
        std = line.get("ours_std")
        text += ("" if std is None else f" ± {fmt_number(std, decimals)}") + f" ({runs_label(len(line['ours_runs']))})"
    return text + (" (approx.)" if line["approximate"] and line["ours"] is not None else "")


def fmt_paper(value: float, pm: float | None, decimals: int) -> str:
    """A paper value with its ± as printed there (the paper's "±.0" stays "± 0.0")."""
    return fmt_number(value, decimals) + ("" if pm is None else f" ± {pm!r}")


def metric_label(metric: str, split: str | None, higher_is_better: bool) -> str:
    return metric + _split_label(split) + ("" if higher_is_better else " ↓")


def render_markdown(report: dict) -> str:
    paper = report["paper"]
    if paper is None:  # your own data
        from .report_own import render_own_markdown
        return render_own_markdown(report)
    seeds = report.get("seeds")
    title = f"# {report['task_name']}: ours vs. the LoRA paper"
    out = [title, "",
           f"Model card `{report['model_card']}`, compared with **{paper['row']}** "
           f"({paper['trainable_params']} trainable parameters) from {paper['table']} of "
           f"{paper['citation']}. Scorer: {paper['scorer']} (our official-equivalent port).", "",
           f"| metric | {'ours' if seeds is None else 'ours (mean ± std)'} | paper {paper['row']} "
           f"({paper['table']}) | difference |",
           "|---|---:|---:|---:|"]
    for line in report["rows"]:
        decimals = line["decimals"] + 1  # one more digit than the paper prints
        name = metric_label(line["metric"], line["split"], line["higher_is_better"])
        paper_value = fmt_paper(line["paper"], line["paper_pm"], line["decimals"])
        out.append(f"| {name} | {fmt_ours(line, decimals)} | {paper_value} | "
                   f"{fmt_number(line['difference'], decimals, signed=True)} |")
    if seeds is None:
        ours_text = "ours is one run."
    else:
        ours_text = (f"ours is the mean ± sample standard deviation (n − 1) over {runs_label(len(seeds))} "
                     f"(seeds {', '.join(map(str, seeds))}).")
    out += ["", "Difference = ours − paper, in the paper's units. ↓: lower is better. "
            f"The paper's ± is its spread over several runs; {ours_text}", "",
            f"Units: {report['units']}"]
    out += _protocol_sections(report)
    if report["notes"]:
        out += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    out += _run_section(report)
    return "\n".join(out) + "\n"


def _protocol_sections(report: dict) -> list[str]:
    """The per-seed values and the per-epoch tables, when the report has them."""
    # imported here: both modules build on this one
    from .report_epochs import render_epoch_section
    from .report_seeds import render_seed_section
    return render_seed_section(report) + render_epoch_section(report)


def _run_section(report: dict) -> list[str]:
    meta, runs = report["meta"], report.get("runs", [])
    if not (meta or report["sources"] or any(run.get("sources") for run in runs)):
        return []
    out = ["", "## Run", ""]
    for key, value in meta.items():
        out.append(f"- {key}: {_fmt_meta(key, value)}")
    for key, value in report["sources"].items():
        out.append(f"- {key}: `{value}`")
    for run in runs:  # a report aggregated over seeds: what differs between its runs
        details = [f"{k}: {_fmt_meta(k, v)}" for k, v in run.get("meta", {}).items() if k not in meta]
        details += [f"{k}: `{v}`" for k, v in run.get("sources", {}).items()]
        out.append(f"- seed {run['seed']}: " + ("; ".join(details) or "(no details)"))
    return out


def _fmt_meta(key: str, value) -> str:
    if key == "wall_clock_s" and isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = int(round(value))
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d} ({value:.0f} s)"
    return str(value)


def report_paths(out_dir: str | Path) -> tuple[Path, Path]:
    return Path(out_dir) / "report.md", Path(out_dir) / "report.json"


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    md_path, json_path = report_paths(out_dir)
    with atomic_files([md_path, json_path]) as (md, js):  # both or neither
        md.write(render_markdown(report))
        json.dump(report, js, indent=1, ensure_ascii=False)
        js.write("\n")
    return md_path, json_path


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
SUBCOMMANDS = {"aggregate": "the mean and sample std over seeds of one setting's report.json files",
               "paper": "Tables 3, 13 and 14 of the paper with our runs beside its LoRA rows"}


def build_parser() -> Parser:
    ap = Parser(description="Report our E2E/WebNLG/DART scores next to the LoRA paper's",
                epilog="Subcommands (each has its own --help): " + "; ".join(
                    f"{name}: {text}" for name, text in SUBCOMMANDS.items()))
    ap.add_argument("--task", required=True, choices=REPORT_TASKS,
                    help="e2e, webnlg, dart, or custom (your own data: E2E's metrics plus --sacrebleu's, no paper "
                         "column)")
    ap.add_argument("--scores", help="scores JSON (E2E: eval/measure_scores.py --json; DART: eval/eval.py "
                                     "--json; WebNLG: same as --scores_all)")
    ap.add_argument("--scores_seen", help="WebNLG: scores JSON of the seen categories")
    ap.add_argument("--scores_unseen", help="WebNLG: scores JSON of the unseen categories")
    ap.add_argument("--scores_all", help="WebNLG: scores JSON of all categories")
    ap.add_argument("--epochs", metavar="FILE",
                    help="instead of --scores: a JSON list of per-epoch records {epoch, step, valid_loss, scores} "
                         "(scores: an object or a scores file; WebNLG: {unseen|seen|all: ...}); the report gets a "
                         "per-epoch table and its headline uses the epoch --select picks")
    ap.add_argument("--select", choices=RULES, help="with --epochs: the checkpoint of the headline: final (the "
                                                    "last epoch), best_valid (lowest validation loss) or "
                                                    "best_test (the paper's rule: best test BLEU); without it, "
                                                    "final")
    ap.add_argument("--model_card", default="gpt2.md", help="gpt2.sm | gpt2.md | gpt2.lg")
    ap.add_argument("--paper_row", choices=("M", "L"), help="paper row to compare with (default: the "
                                                            "model card's size; M for gpt2.sm)")
    ap.add_argument("--out_dir", required=True, help="where report.md and report.json are written")
    ap.add_argument("--meta", help="JSON object of run details to include (work dir, steps, ...)")
    ap.add_argument("--work_dir", help="run directory to record in the report")
    ap.add_argument("--steps", type=int, help="training steps to record in the report")
    ap.add_argument("--wall_clock", type=float, metavar="SECONDS", help="wall-clock time to record")
    ap.add_argument("--paper_numbers", default=str(PAPER_NUMBERS),
                    help="the paper's values with their table numbers")
    return ap


def _score_files(args) -> dict:
    if args.task != "webnlg":
        for flag in ("scores_seen", "scores_unseen", "scores_all"):
            if getattr(args, flag):
                raise UserError(f"--{flag} is for --task webnlg; use --scores")
        if not args.scores:
            raise UserError(f"--task {args.task} needs --scores FILE")
        return {None: args.scores}
    if args.scores and args.scores_all:
        raise UserError("give the all-categories scores once: --scores or --scores_all")
    files = {"unseen": args.scores_unseen, "seen": args.scores_seen, "all": args.scores_all or args.scores}
    files = {split: path for split, path in files.items() if path}
    if not files:
        raise UserError("--task webnlg needs at least one of --scores_seen, --scores_unseen, --scores_all")
    return files


def _run_meta(args) -> dict:
    meta = {}
    if args.meta:
        meta = read_json(args.meta, "run metadata file")
        if not isinstance(meta, dict):
            raise UserError(f"{args.meta}: run metadata must be a JSON object")
    for key, value in (("work_dir", args.work_dir), ("steps", args.steps), ("wall_clock_s", args.wall_clock)):
        if value is not None:
            meta[key] = value
    wall = meta.get("wall_clock_s")
    if wall is not None and (isinstance(wall, bool) or not isinstance(wall, (int, float))
                             or not math.isfinite(wall) or wall < 0):
        raise UserError(f"wall_clock_s must be a number of seconds >= 0, got {wall!r}")
    return meta


def _inputs(args) -> tuple[dict, dict]:
    """(score files by split, or {} with --epochs; every input file by its description)."""
    from .report_epochs import epoch_score_files  # builds on this module

    if args.epochs is None:
        if args.select is not None:
            raise UserError("--select picks an epoch from --epochs FILE; without --epochs the report uses "
                            "the scores given")
        files = _score_files(args)
        return files, {f"scores file {path}": path for path in files.values()}
    given = [f"--{flag}" for flag in ("scores", "scores_seen", "scores_unseen", "scores_all") if getattr(args, flag)]
    if given:
        raise UserError(f"--epochs holds each epoch's scores: leave out {', '.join(given)}")
    return {}, {"--epochs": args.epochs, **{f"scores file {p}": p for p in epoch_score_files(args.epochs)}}


def _single_main(argv: list[str]) -> int:
    from .report_epochs import build_epoch_report, load_epoch_records  # builds on this module

    args = build_parser().parse_args(argv)
    paper = load_paper_numbers(args.paper_numbers)
    files, inputs = _inputs(args)
    if args.task not in paper["tasks"] and args.task != OWN_TASK:
        raise UserError(f"{args.paper_numbers or PAPER_NUMBERS}: no numbers for --task {args.task}")
    numbers = task_numbers(paper, args.task)
    check_outputs({f"--out_dir ({p.name})": p for p in report_paths(args.out_dir)}, {**inputs, "--meta": args.meta})
    if args.epochs is not None:
        records = load_epoch_records(args.epochs, args.task, numbers)
        report = build_epoch_report(args.task, records, args.model_card, select=args.select or "final",
                                    paper=paper, paper_row=args.paper_row, meta=_run_meta(args),
                                    sources={"epochs": str(args.epochs)})
    else:
        scores = {split: load_scores(path, numbers) for split, path in files.items()}
        sources = {("scores" if split is None else f"scores ({split})"): str(path) for split, path in files.items()}
        report = build_report(args.task, scores, args.model_card, paper=paper, paper_row=args.paper_row,
                              meta=_run_meta(args), sources=sources)
    md_path, json_path = write_report(report, args.out_dir)
    print(render_markdown(report), end="")
    print(f"\nwrote {md_path} and {json_path}")
    return 0


@cli
def main(argv: list[str] | None = None) -> int:
    """One run's report (the flags above), or a subcommand: ``aggregate`` or ``paper`` (see SUBCOMMANDS)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "aggregate":
        from .report_seeds import aggregate_main  # builds on this module
        return aggregate_main(argv[1:])
    if argv and argv[0] == "paper":
        from .paper_report import paper_main  # builds on this module
        return paper_main(argv[1:])
    if argv and not argv[0].startswith("-"):  # one run's report takes flags only: a mistyped subcommand
        raise UserError(f"unknown subcommand {argv[0]!r}: expected {' or '.join(SUBCOMMANDS)}, or the flags of one "
                        f"run's report (see --help)")
    return _single_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
