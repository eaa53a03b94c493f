"""What the report reads: the paper's numbers, our scores files and report.json files, each checked.

Every problem is a one-line ``UserError`` naming the file (and line, for JSON syntax). ``gpt2_lora.report``
re-exports these names; the report modules build on them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import UserError
from .fileio import read_text

TASKS = ("e2e", "webnlg", "dart")
OWN_TASK = "custom"  # your own data: a report without a paper column (report_own)
REPORT_TASKS = (*TASKS, OWN_TASK)
RULES = ("final", "best_valid", "best_test")  # which epoch's checkpoint a report's headline uses
SPLITS = ("unseen", "seen", "all")  # WebNLG categories, in the paper's U/S/A order
PAPER_NUMBERS = Path(__file__).resolve().parent / "paper_numbers.json"  # package data
_SIZES = {"gpt2.sm": "S", "gpt2.md": "M", "gpt2.lg": "L", "s": "S", "m": "M", "l": "L",
          "small": "S", "medium": "M", "large": "L"}


def read_json(path: str | Path, what: str):
    text = read_text(path, what)  # a missing file or a bad byte: one line naming it
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: {what} is not valid JSON ({err.msg})") from None


def load_paper_numbers(path: str | Path = PAPER_NUMBERS) -> dict:
    data = read_json(path, "paper numbers file")
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise UserError(f"{path}: expected an object with a 'tasks' table")
    return data


def model_size(model_card: str) -> str:
    """'gpt2.md' -> 'M' (also M/L/S, medium/large/small, a path ending in such a name, or an HF
    config.json: GPT-2's own sizes map to S/M/L, any other shape is 'custom')."""
    path = Path(str(model_card))
    if path.suffix == ".json" and path.is_file():
        config = read_json(path, "--model_card config")
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
    return parse_scores(read_json(path, "scores file"), task_numbers, str(path))


def parse_scores(data, task_numbers: dict, where: str) -> dict:
    """``load_scores`` for scores already read (e.g. one epoch's record); ``where`` starts each error."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a JSON object of scores")
    path = where
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
    signatures = lowered.get("signatures")  # measure_scores.py --sacrebleu: how sacreBLEU and chrF were computed
    if isinstance(signatures, dict):
        scores["signatures"] = {str(k): str(v) for k, v in signatures.items()}
    approximate = lowered.get("approximate")
    # None: a scores file from before the scorers wrote this list (see _approximation_notes)
    scores["approximate"] = [str(k) for k in approximate] if isinstance(approximate, list) else None
    return scores


_REPORT_KEYS = {"task": str, "task_name": str, "model_card": str, "paper": dict, "units": str, "rows": list,
                "notes": list, "meta": dict, "sources": dict}
_ROW_KEYS = ("metric", "split", "ours", "paper", "paper_pm", "decimals", "higher_is_better", "approximate")


def check_report(report, where: str) -> dict:
    """``report`` if it has the shape ``build_report`` gives (a report.json), else a one-line error."""
    if not isinstance(report, dict):
        raise UserError(f"{where}: expected a report (a JSON object as report.json holds)")
    own = report.get("task") == OWN_TASK and "paper" in report and report["paper"] is None  # no paper column
    for key, kind in _REPORT_KEYS.items():
        if not isinstance(report.get(key), kind) and not (own and key == "paper"):
            raise UserError(f"{where}: not a report.json: '{key}' is missing or not a {kind.__name__}")
    if not own and (report["task"] not in TASKS or "row_key" not in report["paper"]):
        raise UserError(f"{where}: not a report.json of one of the tasks {', '.join(REPORT_TASKS)}")
    for i, row in enumerate(report["rows"], 1):
        if not isinstance(row, dict) or any(key not in row for key in _ROW_KEYS):
            raise UserError(f"{where}: row {i} lacks one of {', '.join(_ROW_KEYS)}")
    return report


def load_report(path: str | Path) -> dict:
    """A report.json written by ``write_report`` (one run or an aggregate), checked."""
    return check_report(read_json(path, "report file"), str(path))
