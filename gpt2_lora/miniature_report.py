"""The miniature experiment's numbers: per-arm mean ± sample std over seeds, and the markdown table."""

from __future__ import annotations

import math
from typing import Sequence

from .miniature_score import E2E_METRICS, WEBNLG_FILTERS

# The rows of the table, in the paper's order (Table 3: FT first, then LoRA), then the controls.
ARM_ORDER = ("ft", "lora4", "lora1", "lora16", "none", "scratch")
WEBNLG_METRICS = tuple(f"{m}-{f[0].upper()}" for m in ("BLEU", "METEOR", "TER") for f in WEBNLG_FILTERS)
LOWER_IS_BETTER = {m for m in WEBNLG_METRICS if m.startswith("TER")}


def task_metrics(task: str) -> tuple[str, ...]:
    return E2E_METRICS if task == "e2e" else WEBNLG_METRICS


def mean_std(values: Sequence[float | None]) -> dict:
    """{"mean", "std" (sample, n - 1; None for one value), "n"} over the values that exist."""
    values = [v for v in values if v is not None]
    n = len(values)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def aggregate(task: str, runs: Sequence[dict]) -> list[dict]:
    """One row per arm present in ``runs`` (results of ``miniature.run_result``), in ARM_ORDER."""
    rows = []
    for arm in ARM_ORDER:
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        scores = [r.get("scores") or {} for r in mine]
        rows.append({
            "arm": arm, "label": mine[0]["label"], "seeds": [r["seed"] for r in mine],
            "lora_dim": mine[0]["lora_dim"], "trainable_params": mine[0]["trainable_params"],
            "trainable_fraction": mine[0]["trainable_fraction"], "steps": mine[0]["steps"],
            "metrics": {m: mean_std([s.get(m) for s in scores]) for m in task_metrics(task)},
            "train_s": mean_std([r["train_s"] for r in mine]),
            "beam_s": mean_std([r["beam_s"] for r in mine]),
            "valid_loss": mean_std([r.get("valid_loss") for r in mine]),
        })
    return rows


def _cell(stat: dict, digits: int) -> str:
    if stat["mean"] is None:
        return "n/a"
    text = f"{stat['mean']:.{digits}f}"
    return text + (f" ± {stat['std']:.{digits}f}" if stat["std"] is not None else "")


def _params(n: int, fraction: float) -> str:
    return "0" if n == 0 else f"{n:,} ({100 * fraction:.3g}%)"


def _digits(task: str, metric: str) -> int:
    if metric in ("NIST", "CIDEr"):
        return 3
    return 2 if task == "webnlg" and metric.startswith("BLEU") else 4  # GenerationEval's BLEU is x100


def table(task: str, rows: Sequence[dict]) -> str:
    """The markdown table of one task: each cell the mean ± sample std over the row's seeds."""
    metrics = task_metrics(task)
    head = ["method", "trainable params", "steps", "seeds",
            *[m + (" ↓" if m in LOWER_IS_BETTER else "") for m in metrics], "valid loss", "train s", "beam s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for row in rows:
        cells = [row["label"], _params(row["trainable_params"], row["trainable_fraction"]), str(row["steps"]),
                 str(len(row["seeds"])), *[_cell(row["metrics"][m], _digits(task, m)) for m in metrics],
                 _cell(row["valid_loss"], 4), _cell(row["train_s"], 1), _cell(row["beam_s"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """miniature.md: what ran, on what, and one table per task."""
    base, corpus, budget = result.get("base") or {}, result.get("corpus") or {}, result["budget"]
    out = ["# LoRA vs full fine-tuning on a pretrained base (miniature of the paper's Table 3)", "",
           f"- card: {result['card']}; date: {result['date']}; budget: {budget['name']}; "
           f"model: {budget['model_desc']}",
           f"- base: pretrained from random initialisation as a plain LM (`--obj jlm`) for "
           f"{base.get('steps', '?')} steps ({base.get('train_s', 0):.0f} s), kept at its best validation "
           f"loss {base.get('valid_loss', float('nan')):.4f} (step {base.get('best_step', '?')})",
           f"- corpus: {corpus.get('train_examples', '?'):,} examples / {corpus.get('train_tokens', '?'):,} tokens "
           f"(WebNLG 2017 train {corpus.get('webnlg_train', '?'):,} + DART train without its "
           f"{corpus.get('dart_e2e_dropped', '?'):,} E2E-sourced annotations and the "
           f"{corpus.get('dart_webnlg_test_overlap_dropped', '?')} WebNLG-sourced ones whose text is a WebNLG "
           f"test text)" if corpus else "- corpus: n/a",
           f"- fine-tuning: the paper's recipe ({result['recipe_desc']}), {budget['task_length_desc']}; "
           f"decoding: {result['decoding_desc']}",
           "- cells: mean ± sample std over the seeds; train s / beam s: wall seconds of each call on the "
           "device"]
    if result.get("rescored"):
        out.append(f"- scores recomputed on {result['rescored']['where']} ({result['rescored']['date']})")
    for task, body in result["tasks"].items():
        out += ["", f"## {task.upper() if task == 'e2e' else 'WebNLG'} (test set)", "", table(task, body["aggregate"])]
        failed = [f"{r['name']}: {r['error']}" for r in body["runs"] if r.get("error")]
        if failed:
            out.append(f"\nfailed (no scores): {'; '.join(failed)}")
        errors = sorted({r["score_error"] for r in body["runs"] if r.get("score_error")})
        approx = sorted({m for r in body["runs"] for m in r.get("approximate", [])})
        if approx:
            out.append(f"\n{', '.join(approx)}: approximate here (no Java): rescore with `--rescore`.")
        absent = [m for m in task_metrics(task) if any(row["metrics"][m]["n"] == 0 for row in body["aggregate"])]
        if absent:
            out.append(f"\n{', '.join(absent)}: not computed on this machine (METEOR needs Java): rescore with "
                       f"`--rescore`.")
        if errors:
            out.append(f"\nnot scored here ({'; '.join(errors)}): rescore with `--rescore`.")
        if body.get("missing"):
            out.append(f"\nnot run yet (a time limit came first, or this task was not asked for; the same "
                       f"command again runs them): {', '.join(body['missing'])}")
    return "\n".join(out) + "\n"
