"""Per-epoch evaluation: each epoch's checkpoint scored on the test set, and the rule that picks one.

The paper reports, for each run, "the result ... taken from the best epoch" (arXiv 2106.09685v2,
Appendix D.3), i.e. the epoch with the best test BLEU. A report built here holds the whole per-epoch
table, says which epoch each rule would pick, and uses the one asked for in its headline:

    final       the last epoch's checkpoint (the default: no test-set selection)
    best_valid  the lowest validation loss (a selection that does not look at the test set)
    best_test   the paper's rule: the best test BLEU (WebNLG: BLEU on all categories)

Ties go to the earlier epoch. An epoch record, as the pipeline writes it (a JSON list of these):

    {"epoch": 3, "step": 15774, "valid_loss": 1.184,
     "scores": {"BLEU": 0.7012, "NIST": 8.80, ...}}          E2E / DART: what the scorer's --json wrote
     "scores": {"unseen": {...}, "seen": {...}, "all": {...}}  WebNLG: one such object per category

``valid_loss`` may be null; ``scores`` (or each category's) may also be the path of the scorer's JSON
file, relative to the records file.
"""

from __future__ import annotations

import math
from pathlib import Path

from .errors import UserError
from .report import (RULES, SPLITS, build_report, fmt_number, load_paper_numbers, load_scores, metric_label,
                     ordered_splits, paper_units, parse_scores, read_json, task_numbers)

RULE_TEXT = {"final": "the final checkpoint", "best_valid": "the lowest validation loss",
             "best_test": "the paper's rule: the best test BLEU"}


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _scores_of(value, task: str, numbers: dict, where: str, base_dir: Path | None) -> dict:
    """One record's scores, parsed: {score_key: value, 'approximate': ...} or, for WebNLG, {split: that}."""
    def one(data, at):
        if isinstance(data, str):  # the scorer's own --json file
            return load_scores(Path(base_dir or ".") / data, numbers)
        return parse_scores(data, numbers, at)

    if task != "webnlg":
        return one(value, f"{where} scores")
    if not isinstance(value, dict) or not value or set(value) - set(SPLITS):
        raise UserError(f"{where}: WebNLG scores must be an object with some of {', '.join(SPLITS)}")
    return {split: one(value[split], f"{where} scores ({split})") for split in ordered_splits(value)}


def parse_epoch_records(records, task: str, numbers: dict, where: str = "epoch records",
                        base_dir: Path | None = None) -> list[dict]:
    """Checked records sorted by epoch: {"epoch", "step", "valid_loss", "scores"} (scores parsed)."""
    if not isinstance(records, list) or not records:
        raise UserError(f"{where}: expected a non-empty list of epoch records")
    rows = []
    for i, record in enumerate(records, 1):
        at = f"{where}: record {i}"
        if not isinstance(record, dict) or "scores" not in record:
            raise UserError(f"{at}: expected an object with epoch, step, valid_loss and scores")
        epoch, step, loss = record.get("epoch"), record.get("step"), record.get("valid_loss")
        if not _is_int(epoch) or epoch < 1 or not _is_int(step) or step < 0:
            raise UserError(f"{at}: 'epoch' must be an integer >= 1 and 'step' an integer >= 0, "
                            f"got {epoch!r} and {step!r}")
        if loss is not None and not _number(loss):
            raise UserError(f"{at}: 'valid_loss' must be a number or null, got {loss!r}")
        rows.append({"epoch": epoch, "step": step, "valid_loss": None if loss is None else float(loss),
                     "scores": _scores_of(record["scores"], task, numbers, f"{at} (epoch {epoch})", base_dir)})
    rows.sort(key=lambda row: row["epoch"])
    for before, after in zip(rows, rows[1:]):
        if after["epoch"] == before["epoch"]:
            raise UserError(f"{where}: epoch {after['epoch']} is given twice")
        if after["step"] <= before["step"]:
            raise UserError(f"{where}: epoch {after['epoch']} is at step {after['step']}, not after epoch "
                            f"{before['epoch']}'s step {before['step']}")
    if task == "webnlg" and len({tuple(row["scores"]) for row in rows}) > 1:
        raise UserError(f"{where}: every epoch needs scores of the same WebNLG categories")
    return rows


def epoch_score_files(path: str | Path) -> list[Path]:
    """The scores files an epoch records file names (so the CLI can check them against its outputs)."""
    records = read_json(path, "epoch records file")
    found = []
    for record in records if isinstance(records, list) else []:
        scores = record.get("scores") if isinstance(record, dict) else None
        values = scores.values() if isinstance(scores, dict) else [scores]  # WebNLG: a path per category
        found += [Path(path).parent / v for v in values if isinstance(v, str)]
    return found


def load_epoch_records(path: str | Path, task: str, numbers: dict) -> list[dict]:
    """``parse_epoch_records`` of a JSON file; scores given as paths are read relative to it."""
    return parse_epoch_records(read_json(path, "epoch records file"), task, numbers, str(path), Path(path).parent)


# ---------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------
def selection_bleu(row: dict) -> float | None:
    """The BLEU the paper's rule compares: the record's own BLEU; WebNLG: BLEU on all categories."""
    scores = row["scores"]
    if isinstance(scores, dict) and isinstance(scores.get("all"), dict):
        scores = scores["all"]
    if not isinstance(scores, dict):
        return None
    bleu = next((v for k, v in scores.items() if str(k).lower() == "bleu"), None)
    return bleu if _number(bleu) else None


def select_epoch(rows: list[dict], rule: str) -> dict:
    """The row (epoch record) whose checkpoint ``rule`` picks; ties go to the earlier epoch.

    Works on the pipeline's records as well as on a report's "epochs" table (both have "epoch",
    "valid_loss" and "scores").
    """
    if rule not in RULES:
        raise UserError(f"--select {rule}: expected one of {', '.join(RULES)}")
    if not rows:
        raise UserError(f"--select {rule}: there are no epoch records to select from")
    if any(not isinstance(row, dict) or not _is_int(row.get("epoch")) or "scores" not in row for row in rows):
        raise UserError(f"--select {rule}: every epoch record needs an integer 'epoch' and its 'scores'")
    rows = sorted(rows, key=lambda row: row["epoch"])
    if rule == "final":
        return rows[-1]
    if rule == "best_valid":
        scored = [row for row in rows if _number(row.get("valid_loss"))]
        if not scored:
            raise UserError("--select best_valid: no epoch record has a valid_loss")
        return min(scored, key=lambda row: row["valid_loss"])  # min and max keep the first of equals: the earlier
    scored = [row for row in rows if selection_bleu(row) is not None]
    if not scored:
        raise UserError("--select best_test: no epoch record has a test BLEU (WebNLG: BLEU on 'all' categories)")
    return max(scored, key=selection_bleu)


def epoch_picks(rows: list[dict]) -> dict:
    """{rule: the epoch it picks, or None where the records cannot tell (e.g. no validation loss)}."""
    picks = {}
    for rule in RULES:
        try:
            picks[rule] = select_epoch(rows, rule)["epoch"]
        except UserError:
            picks[rule] = None
    return picks


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------
def epoch_table(task: str, rows: list[dict], numbers: dict) -> list[dict]:
    """Each row with its scores in the paper's units added as "values": [{"metric", "split", "value"}]."""
    table = []
    for row in rows:
        by_split = row["scores"] if task == "webnlg" else {None: row["scores"]}
        values = [{"metric": metric, "split": split,
                   "value": paper_units(task, metric, spec, by_split[split][spec["score_key"]])}
                  for metric, spec in numbers["metrics"].items() for split in ordered_splits(by_split)]
        table.append({**{k: row[k] for k in ("epoch", "step", "valid_loss", "scores")}, "values": values})
    return table


def build_epoch_report(task: str, records: list[dict], model_card: str, select: str = "final",
                       paper: dict | None = None, paper_row: str | None = None, meta: dict | None = None,
                       sources: dict | None = None) -> dict:
    """``build_report`` of the epoch ``select`` picks, plus "selection" (the rule, the epoch it picked and
    what every rule would pick) and "epochs" (the per-epoch table)."""
    paper = paper if paper is not None else load_paper_numbers()
    numbers = task_numbers(paper, task)
    rows = epoch_table(task, parse_epoch_records(records, task, numbers), numbers)
    chosen = select_epoch(rows, select)
    scores = chosen["scores"] if task == "webnlg" else {None: chosen["scores"]}
    report = build_report(task, scores, model_card, paper=paper, paper_row=paper_row, meta=meta, sources=sources)
    report["selection"] = {"rule": select, "epoch": chosen["epoch"], "step": chosen["step"],
                           "picks": epoch_picks(rows)}
    report["epochs"] = rows
    return report


def reselect(report: dict, rule: str, paper: dict | None = None, where: str = "report") -> dict:
    """The same run's report with its headline taken from the epoch ``rule`` picks."""
    if "seeds" in report:
        raise UserError(f"{where}: is an aggregate over seeds; select the epoch in each seed's report")
    if not report.get("epochs"):
        raise UserError(f"{where}: has no per-epoch table to select from (build it with --epochs)")
    return build_epoch_report(report["task"], report["epochs"], report["model_card"], select=rule, paper=paper,
                              paper_row=(report["paper"] or {}).get("row_key"), meta=report["meta"],
                              sources=report["sources"])


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def _pick_text(picks: dict) -> str:
    def at(rule):
        return "n/a" if picks.get(rule) is None else f"epoch {picks[rule]}"
    return (f"The final checkpoint is {at('final')}; the paper's rule (best test BLEU) picks {at('best_test')}; "
            f"the validation loss picks {at('best_valid')}.")


def _epoch_table_lines(rows: list[dict], selection: dict, headline_rows: list[dict]) -> list[str]:
    style = {(r["metric"], r["split"]): r for r in headline_rows}  # decimals and direction of each column
    columns = [style[(c["metric"], c["split"])] for c in rows[0]["values"]]
    header = [metric_label(c["metric"], c["split"], c["higher_is_better"]) for c in columns]
    out = ["| epoch | step | valid loss | " + " | ".join(header) + " | picked by |",
           "|---:|---:|---:|" + "---:|" * len(columns) + "---|"]
    for row in rows:
        cells = [fmt_number(cell["value"], c["decimals"] + 1) for cell, c in zip(row["values"], columns)]
        rules = [r for r in RULES if selection["picks"].get(r) == row["epoch"]]
        picked = ", ".join(f"**{r}**" if r == selection["rule"] else r for r in rules)
        loss = "n/a" if row["valid_loss"] is None else f"{row['valid_loss']:.4f}"
        out.append(f"| {row['epoch']} | {row['step']} | {loss} | " + " | ".join(cells) + f" | {picked} |")
    return out


def _one_run_lines(run: dict, headline_rows: list[dict]) -> list[str]:
    selection = run["selection"]
    return [f"Headline: epoch {selection['epoch']} (step {selection['step']}), by rule `{selection['rule']}` "
            f"({RULE_TEXT[selection['rule']]}). {_pick_text(selection['picks'])}", "",
            *_epoch_table_lines(run["epochs"], selection, headline_rows)]


def render_epoch_section(report: dict) -> list[str]:
    """The "Per-epoch evaluation" section (per seed for an aggregate); [] for a report without epochs."""
    runs = report.get("runs") or [report]
    runs = [run for run in runs if run.get("selection") and run.get("epochs")]
    if not runs:
        return []
    out = ["", "## Per-epoch evaluation", "",
           "Each epoch's checkpoint, scored on the test set, in the paper's units (↓: lower is better). "
           "\"picked by\": the rules that pick that epoch (bold: the headline's)."]
    for run in runs:
        out += [""] + ([f"### seed {run['seed']}", ""] if "seed" in run else []) + _one_run_lines(run, report["rows"])
    return out
