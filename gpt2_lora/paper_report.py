"""The paper's three GPT-2 tables in one report, with our runs beside its LoRA rows.

Laid out like Table 3 (E2E), Table 13 (DART) and Table 14 (WebNLG, BLEU/MET/TER on U/S/A) of arXiv
2106.09685v2: for GPT-2 M and L, the paper's other rows (fine-tuning, adapters, prefix tuning, ...) for
context, its LoRA row, and ours (the mean ± sample std over seeds, or one run) right below that.
Writes ``paper_report.md`` and ``paper_report.json``:

    gpt2-lora-report paper --out_dir DIR E2E_M/report.json E2E_L/report.json DART_M/report.json ...

Each input is a report.json (one run's, or an ``aggregate`` over seeds); one per task and paper row.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from .cli import Parser
from .errors import UserError
from .fileio import atomic_files, check_outputs
from .report import (PAPER_NUMBERS, SPLITS, check_report, fmt_number, fmt_paper, load_paper_numbers, load_report,
                     runs_label, task_numbers)

PAPER_ORDER = ("e2e", "dart", "webnlg")  # Tables 3, 13, 14
SIZES = {"M": "GPT-2 M", "L": "GPT-2 L"}


def _columns(numbers: dict) -> list[dict]:
    letters = numbers.get("splits")  # WebNLG: {"unseen": "U", ...}
    return [{"id": metric if split is None else f"{metric} {letters[split]}", "metric": metric, "split": split,
             "decimals": spec["decimals"], "higher_is_better": spec["higher_is_better"]}
            for metric, spec in numbers["metrics"].items() for split in (SPLITS if letters else (None,))]


def _paper_cells(values: dict, columns: list[dict]) -> dict:
    cells = {}
    for col in columns:
        value = values[col["split"]][col["metric"]] if col["split"] else values[col["metric"]]
        cells[col["id"]] = {"value": value["value"], "pm": value["pm"]}
    return cells


def _ours_row(run: dict, columns: list[dict]) -> dict:
    by_key = {(row["metric"], row["split"]): row for row in run["rows"]}
    cells = {}
    for col in columns:
        row = by_key.get((col["metric"], col["split"]))
        cells[col["id"]] = None if row is None else {
            "value": row["ours"], "std": row.get("ours_std"), "runs": row.get("ours_runs", [row["ours"]]),
            "approximate": row["approximate"]}
    seeds = run.get("seeds")
    return {"kind": "ours", "label": "ours", "model_card": run["model_card"], "seeds": seeds,
            "n_runs": len(seeds) if seeds else 1, "lora": run["meta"].get("lora"),
            "checkpoint_rule": (run.get("selection") or {}).get("rule"),
            "decoding": run["meta"].get("decoding"), "cells": cells}


def _place_runs(runs: Sequence[dict], names: Sequence[str] | None) -> dict:
    placed = {}
    for i, run in enumerate(runs):
        where = names[i] if names else f"run {i + 1}"
        check_report(run, where)
        if run["paper"] is None:
            raise UserError(f"{where}: a report on your own data (task {run['task']}): the paper's tables have no "
                            "row for it")
        key = (run["task"], run["paper"]["row_key"])
        if key in placed:
            raise UserError(f"{where}: a second {run['task']} run for the paper's GPT-2 {key[1]} row; give one "
                            "report per task and size (aggregate the seeds first)")
        placed[key] = run
    return placed


def build_paper_report(runs: Sequence[dict], paper: dict | None = None, names: Sequence[str] | None = None) -> dict:
    """The three tables as a JSON-ready dict: the tasks that have a run, in the paper's order, each with
    a GPT-2 M and a GPT-2 L block of rows (paper rows, the paper's LoRA row, then ours if there is a run).
    ``names`` (e.g. the runs' files) name the runs in errors."""
    paper = paper if paper is not None else load_paper_numbers()
    placed = _place_runs(runs, names)
    tables, notes = [], []
    for task in PAPER_ORDER:
        if not any(t == task for t, _ in placed):
            continue
        numbers = task_numbers(paper, task)
        if "baselines" not in numbers:
            raise UserError(f"the paper numbers file has no other rows ('baselines') for {task}")
        columns = _columns(numbers)
        blocks = []
        for size, name in SIZES.items():
            rows = [{"kind": "paper", "label": b["method"], "trainable_params": b["trainable_params"],
                     "prior_work": b.get("prior_work", False), "cells": _paper_cells(b["values"], columns)}
                    for b in numbers["baselines"][size]]
            lora = numbers["rows"][size]
            rows.append({"kind": "paper_lora", "label": "LoRA", "trainable_params": lora["trainable_params"],
                         "prior_work": False, "cells": _paper_cells(lora["values"], columns)})
            if (task, size) in placed:
                rows.append(_ours_row(placed[(task, size)], columns))
            else:
                notes.append(f"{numbers['name']}: no run of ours for {name}.")
            blocks.append({"size": size, "label": name, "rows": rows})
        tables.append({"task": task, "name": numbers["name"], "table": numbers["table"], "columns": columns,
                       "blocks": blocks})
    return {"paper": f"{paper['paper']['title']} (arXiv {paper['paper']['arxiv']})",
            "verified": paper["paper"].get("verified", ""), "tables": tables, "notes": notes}


# ---------------------------------------------------------------------------------------------
# Rendering and writing
# ---------------------------------------------------------------------------------------------
def _cell_text(row: dict, col: dict) -> str:
    cell = row["cells"][col["id"]]
    if cell is None:
        return "—"
    if row["kind"] != "ours":
        return fmt_paper(cell["value"], cell["pm"], col["decimals"])
    decimals = col["decimals"] + 1  # one more digit than the paper prints
    text = fmt_number(cell["value"], decimals)
    if cell["value"] is not None and cell["std"] is not None:
        text += f" ± {fmt_number(cell['std'], decimals)}"
    return text + (" (approx.)" if cell["approximate"] and cell["value"] is not None else "")


def _row_label(row: dict) -> str:
    if row["kind"] == "paper":
        return row["label"] + ("*" if row["prior_work"] else "")
    if row["kind"] == "paper_lora":
        return "LoRA (paper)"
    return f"**ours** (`{row['model_card']}`, {runs_label(row['n_runs'])})"


def _table_lines(table: dict) -> list[str]:
    cols = table["columns"]
    header = [c["id"] + ("" if c["higher_is_better"] else " ↓") for c in cols]
    out = [f"## {table['table']}: {table['name']}", "",
           "| method | # trainable parameters | " + " | ".join(header) + " |",
           "|---|---:|" + "---:|" * len(cols)]
    for block in table["blocks"]:
        out.append(f"| **{block['label']}** | |" + " |" * len(cols))
        for row in block["rows"]:
            params = row["trainable_params"] if row["kind"] != "ours" else row["lora"] or ""  # ours: r and alpha
            out.append(f"| {_row_label(row)} | {params} | "
                       + " | ".join(_cell_text(row, c) for c in cols) + " |")
    return out


def _run_lines(data: dict) -> list[str]:
    out = []
    for table in data["tables"]:
        for block in table["blocks"]:
            for row in block["rows"]:
                if row["kind"] == "ours":
                    seeds = "one run" if not row["seeds"] else "seeds " + ", ".join(map(str, row["seeds"]))
                    rule = row["checkpoint_rule"] or "as scored"
                    out.append(f"- {table['name']}, {block['label']}: `{row['model_card']}`, {seeds}; "
                               f"checkpoint: {rule}; decoding: {row['decoding'] or 'not recorded'}.")
    return out


def render_paper_report(data: dict) -> str:
    out = ["# Ours beside the LoRA paper's GPT-2 tables", "",
           f"Paper rows from {data['paper']}. *: numbers the paper quotes from prior work. After a paper value, "
           "± is the paper's spread over its runs; after ours, the sample standard deviation (n − 1) over our "
           "seeds. ↓: lower is better. Our values have one more digit than the paper prints."]
    for table in data["tables"]:
        out += [""] + _table_lines(table)
    out += ["", "## Our runs", ""] + _run_lines(data)
    if data["notes"]:
        out += ["", "## Notes", ""] + [f"- {note}" for note in data["notes"]]
    return "\n".join(out) + "\n"


def paper_report_paths(out_dir: str | Path) -> tuple[Path, Path]:
    return Path(out_dir) / "paper_report.md", Path(out_dir) / "paper_report.json"


def paper_report(runs: Sequence[dict], out_dir: str | Path, paper: dict | None = None,
                 names: Sequence[str] | None = None) -> tuple[Path, Path]:
    """Write paper_report.md and paper_report.json (both or neither) into ``out_dir``; returns their paths."""
    data = build_paper_report(runs, paper, names)
    md_path, json_path = paper_report_paths(out_dir)
    with atomic_files([md_path, json_path]) as (md, js):
        md.write(render_paper_report(data))
        json.dump(data, js, indent=1, ensure_ascii=False)
        js.write("\n")
    return md_path, json_path


def build_paper_parser() -> Parser:
    ap = Parser(prog=f"{Path(sys.argv[0]).name} paper",
                description="The paper's Tables 3 (E2E), 13 (DART) and 14 (WebNLG) with our runs beside its "
                            "LoRA rows: paper_report.md and paper_report.json.")
    ap.add_argument("reports", nargs="+", metavar="REPORT_JSON",
                    help="report.json files (one run's or an aggregate), one per task and GPT-2 size")
    ap.add_argument("--out_dir", required=True, help="where paper_report.md and paper_report.json are written")
    ap.add_argument("--paper_numbers", default=str(PAPER_NUMBERS), help="the paper's values")
    return ap


def paper_main(argv: list[str]) -> int:
    args = build_paper_parser().parse_args(argv)
    check_outputs({f"--out_dir ({p.name})": p for p in paper_report_paths(args.out_dir)},
                  {f"report file {path}": path for path in args.reports})
    paper = load_paper_numbers(args.paper_numbers)
    runs = [load_report(path) for path in args.reports]
    md_path, json_path = paper_report(runs, args.out_dir, paper, names=args.reports)
    print(md_path.read_text(encoding="utf-8"), end="")
    print(f"\nwrote {md_path} and {json_path}")
    return 0
