"""The paper-vs-ours report: our scores next to the LoRA paper's GPT-2 rows, as markdown and JSON.

    gpt2-lora-report --task e2e --scores e2e_scores.json --model_card gpt2.md --out_dir runs/e2e
    gpt2-lora-report --task webnlg --scores_seen s.json --scores_unseen u.json --scores_all a.json \\
        --model_card gpt2.md --out_dir runs/webnlg [--meta meta.json] [--steps N] [--wall_clock SECONDS]

Score files are what our scorers write with ``--json``: ``eval/measure_scores.py`` (E2E: BLEU, NIST,
METEOR, ROUGE_L, CIDEr; fractions as e2e-metrics prints them) and ``eval/eval.py`` (WebNLG/DART: bleu
x100, meteor, ter). The paper's values live in ``gpt2_lora/paper_numbers.json`` with their table numbers;
ours are converted to the paper's units there ("scale"). Writes ``report.md`` and ``report.json`` into
``--out_dir`` and prints the markdown. This module only compares numbers; it computes no metric.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from .errors import UserError, cli
from .fileio import atomic_files, check_outputs, read_text

TASKS = ("e2e", "webnlg", "dart")
SPLITS = ("unseen", "seen", "all")  # WebNLG categories, in the paper's U/S/A order
PAPER_NUMBERS = Path(__file__).resolve().parent / "paper_numbers.json"  # package data
_SIZES = {"gpt2.sm": "S", "gpt2.md": "M", "gpt2.lg": "L", "s": "S", "m": "M", "l": "L",
          "small": "S", "medium": "M", "large": "L"}


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def _read_json(path: str | Path, what: str):
    text = read_text(path, what)  # a missing file or a bad byte: one line naming it
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: {what} is not valid JSON ({err.msg})") from None


def load_paper_numbers(path: str | Path = PAPER_NUMBERS) -> dict:
    data = _read_json(path, "paper numbers file")
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise UserError(f"{path}: expected an object with a 'tasks' table")
    return data


def model_size(model_card: str) -> str:
    """'gpt2.md' -> 'M' (also M/L/S, medium/large/small, a path ending in such a name, or an HF
    config.json: GPT-2's own sizes map to S/M/L, any other shape is 'custom')."""
    path = Path(str(model_card))
    if path.suffix == ".json" and path.is_file():
        config = _read_json(path, "--model_card config")
        shape = (config.get("n_layer"), config.get("n_embd")) if isinstance(config, dict) else None
        return {(12, 768): "S", (24, 1024): "M", (36, 1280): "L"}.get(shape, "custom")
    name = path.name.lower()
    if name.endswith(".json"):
        name = name[:-5]
    if name not in _SIZES:
        raise UserError(f"--model_card {model_card}: expected gpt2.sm, gpt2.md or gpt2.lg (or S/M/L), "
                        "or an existing config.json")
    return _SIZES[name]


def load_scores(path: str | Path, task_numbers: dict) -> dict:
    """Our scores from a ``--json`` file: {score_key: float or None, 'approximate': [score_key, ...]}.

    Keys are matched case-insensitively; a missing key is an error, a null value means "not computed".
    """
    data = _read_json(path, "scores file")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object of scores")
    lowered = {str(k).lower(): v for k, v in data.items()}
    scores = {}
    for spec in task_numbers["metrics"].values():
        key = spec["score_key"]
        if key.lower() not in lowered:
            wanted = ", ".join(s["score_key"] for s in task_numbers["metrics"].values())
            raise UserError(f"{path}: no '{key}' score (a {task_numbers['name']} scores file has {wanted})")
        value = lowered[key.lower()]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise UserError(f"{path}: '{key}' must be a number or null, got {value!r}")
        scores[key] = None if value is None else float(value)
    approximate = lowered.get("approximate")
    # None: a scores file from before the scorers wrote this list (see _approximation_notes)
    scores["approximate"] = [str(k) for k in approximate] if isinstance(approximate, list) else None
    return scores


# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------
def _split_label(split: str | None) -> str:
    return "" if split is None else f" ({split})"


def build_report(task: str, scores: dict, model_card: str, paper: dict | None = None,
                 paper_row: str | None = None, meta: dict | None = None,
                 sources: dict | None = None) -> dict:
    """The report as a JSON-ready dict.

    ``scores``: {None: scores} for E2E/DART, {"unseen"|"seen"|"all": scores} for WebNLG (each as
    ``load_scores`` returns it). ``paper_row`` ('M' or 'L') defaults to the model card's size; a GPT-2
    small run (no paper row) is compared with the M row, and the report says so.
    """
    if task not in TASKS:
        raise UserError(f"--task {task}: expected one of {', '.join(TASKS)}")
    paper = paper if paper is not None else load_paper_numbers()
    numbers = paper["tasks"][task]
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
    splits = sorted(scores, key=lambda s: -1 if s is None else SPLITS.index(s))  # the paper's U/S/A order
    for metric, spec in numbers["metrics"].items():
        for split in splits:
            split_scores = scores[split]
            key = spec["score_key"]
            raw = split_scores[key]
            if raw is not None and spec["scale"] != 1 and raw > 1:
                raise UserError(f"{task} {key} = {raw} is not a fraction: the scores file should hold the "
                                f"scorer's own units (e.g. BLEU 0.70, not 70.0)")
            if raw is not None and (raw < 0 or (metric == "METEOR" and raw > 1) or (metric == "BLEU" and raw > 100)):
                raise UserError(f"{task} {key} = {raw} is outside the metric's range (BLEU 0-100 as eval.py "
                                f"writes it, METEOR 0-1, nothing negative)")
            reference = (row["values"][split] if split is not None else row["values"])[metric]
            ours = None if raw is None else raw * spec["scale"]
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
def _fmt(value: float | None, decimals: int, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def render_markdown(report: dict) -> str:
    paper = report["paper"]
    title = f"# {report['task_name']}: ours vs. the LoRA paper"
    out = [title, "",
           f"Model card `{report['model_card']}`, compared with **{paper['row']}** "
           f"({paper['trainable_params']} trainable parameters) from {paper['table']} of "
           f"{paper['citation']}. Scorer: {paper['scorer']} (our official-equivalent port).", "",
           f"| metric | ours | paper {paper['row']} ({paper['table']}) | difference |",
           "|---|---:|---:|---:|"]
    for line in report["rows"]:
        decimals = line["decimals"] + 1  # one more digit than the paper prints
        name = line["metric"] + _split_label(line["split"])
        if not line["higher_is_better"]:
            name += " ↓"
        ours = _fmt(line["ours"], decimals) + (" (approx.)" if line["approximate"] and line["ours"] is not None else "")
        pm = "" if line["paper_pm"] is None else f" ± {line['paper_pm']:g}"
        paper_value = _fmt(line["paper"], line["decimals"]) + pm
        out.append(f"| {name} | {ours} | {paper_value} | {_fmt(line['difference'], decimals, signed=True)} |")
    out += ["", "Difference = ours − paper, in the paper's units. ↓: lower is better. "
            "The paper's ± is its spread over several runs; ours is one run.", "",
            f"Units: {report['units']}"]
    if report["notes"]:
        out += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    meta = report["meta"]
    if meta or report["sources"]:
        out += ["", "## Run", ""]
        for key, value in meta.items():
            out.append(f"- {key}: {_fmt_meta(key, value)}")
        for key, value in report["sources"].items():
            out.append(f"- {key}: `{value}`")
    return "\n".join(out) + "\n"


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
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Report our E2E/WebNLG/DART scores next to the LoRA paper's")
    ap.add_argument("--task", required=True, choices=TASKS)
    ap.add_argument("--scores", help="scores JSON (E2E: eval/measure_scores.py --json; DART: eval/eval.py "
                                     "--json; WebNLG: same as --scores_all)")
    ap.add_argument("--scores_seen", help="WebNLG: scores JSON of the seen categories")
    ap.add_argument("--scores_unseen", help="WebNLG: scores JSON of the unseen categories")
    ap.add_argument("--scores_all", help="WebNLG: scores JSON of all categories")
    ap.add_argument("--model_card", default="gpt2.md", help="gpt2.sm | gpt2.md | gpt2.lg (default gpt2.md)")
    ap.add_argument("--paper_row", choices=("M", "L"), help="paper row to compare with (default: the "
                                                            "model card's size; M for gpt2.sm)")
    ap.add_argument("--out_dir", required=True, help="where report.md and report.json are written")
    ap.add_argument("--meta", help="JSON object of run details to include (work dir, steps, ...)")
    ap.add_argument("--work_dir", help="run directory to record in the report")
    ap.add_argument("--steps", type=int, help="training steps to record in the report")
    ap.add_argument("--wall_clock", type=float, metavar="SECONDS", help="wall-clock time to record")
    ap.add_argument("--paper_numbers", default=str(PAPER_NUMBERS),
                    help="the paper's values with their table numbers (default: gpt2_lora/paper_numbers.json)")
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


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paper = load_paper_numbers(args.paper_numbers)
    files = _score_files(args)
    if args.task not in paper["tasks"]:
        raise UserError(f"{args.paper_numbers or PAPER_NUMBERS}: no numbers for --task {args.task}")
    numbers = paper["tasks"][args.task]
    check_outputs({f"--out_dir ({p.name})": p for p in report_paths(args.out_dir)},
                  {**{f"scores file {path}": path for path in files.values()}, "--meta": args.meta})
    scores = {split: load_scores(path, numbers) for split, path in files.items()}
    meta = {}
    if args.meta:
        meta = _read_json(args.meta, "run metadata file")
        if not isinstance(meta, dict):
            raise UserError(f"{args.meta}: run metadata must be a JSON object")
    for key, value in (("work_dir", args.work_dir), ("steps", args.steps), ("wall_clock_s", args.wall_clock)):
        if value is not None:
            meta[key] = value
    wall = meta.get("wall_clock_s")
    if wall is not None and (isinstance(wall, bool) or not isinstance(wall, (int, float))
                             or not math.isfinite(wall) or wall < 0):
        raise UserError(f"wall_clock_s must be a number of seconds >= 0, got {wall!r}")
    sources = {("scores" if split is None else f"scores ({split})"): str(path) for split, path in files.items()}
    report = build_report(args.task, scores, args.model_card, paper=paper, paper_row=args.paper_row,
                          meta=meta, sources=sources)
    md_path, json_path = write_report(report, args.out_dir)
    print(render_markdown(report), end="")
    print(f"\nwrote {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
