"""The report of a run on your own data (the pipeline's ``custom`` task): our scores alone, no paper column.

The LoRA paper has no numbers for data of your own, so there is nothing to put beside ours. The test split
is scored as E2E is (e2e-metrics' BLEU, NIST, METEOR, ROUGE-L, CIDEr: several references per context,
grouped) plus sacreBLEU and chrF with their signatures (``eval/measure_scores.py -p --sacrebleu --json``).
The report has ``build_report``'s shape with ``"paper": null`` and every row's ``paper``, ``paper_pm`` and
``difference`` null, so the per-epoch and seed modules work on it as on the paper tasks' reports;
``paper_report`` refuses it (the paper's tables have no row for it).

    gpt2-lora-report --task custom --scores scores.json --model_card gpt2.md --out_dir DIR
"""

from __future__ import annotations

OWN_TASK = "custom"
NO_PAPER_NOTE = ("No paper column: the LoRA paper reports no numbers for your data, so there is nothing to "
                 "compare ours with. Quote the E2E metrics (as e2e-metrics computes them) together with "
                 "sacreBLEU and chrF and their signatures.")
# sacrebleu's own 0-100 scale, as measure_scores.py --sacrebleu writes them
SACRE_METRICS = {"sacreBLEU": {"score_key": "sacreBLEU", "scale": 1, "decimals": 1, "higher_is_better": True},
                 "chrF": {"score_key": "chrF", "scale": 1, "decimals": 1, "higher_is_better": True}}


def own_numbers(paper: dict) -> dict:
    """What the report modules read for a task (its metrics and their units), without any paper row: E2E's
    metrics as the E2E report shows them, then sacreBLEU and chrF."""
    e2e = paper["tasks"]["e2e"]
    return {"name": "Your own data", "table": None, "rows": {},
            "scorer": f"{e2e['scorer']} -p (E2E metrics, references grouped by context) and sacreBLEU",
            "units": "BLEU, METEOR and ROUGE-L x100 (as the paper prints E2E's), NIST and CIDEr unscaled; "
                     "sacreBLEU and chrF on sacrebleu's 0-100 scale.",
            "metrics": {**e2e["metrics"], **SACRE_METRICS}}


def build_own_report(scores: dict, model_card: str, paper: dict, meta: dict | None = None,
                     sources: dict | None = None) -> dict:
    """The report of one run: ``scores`` is {None: load_scores(...)} of a ``measure_scores.py --sacrebleu``
    file; rows in ``own_numbers``' order, the sacrebleu rows with their ``signature``."""
    from .report import _approximation_notes, paper_units

    numbers = own_numbers(paper)
    given = scores[None]
    signatures = given.get("signatures") or {}
    rows = []
    for metric, spec in numbers["metrics"].items():
        raw = given[spec["score_key"]]
        row = {"metric": metric, "split": None, "ours": paper_units(OWN_TASK, metric, spec, raw),
               "ours_as_scored": raw, "paper": None, "paper_pm": None, "difference": None,
               "decimals": spec["decimals"], "higher_is_better": spec["higher_is_better"],
               "approximate": spec["score_key"].lower() in {k.lower() for k in given.get("approximate") or []}}
        if metric in signatures:
            row["signature"] = signatures[metric]
        rows.append(row)
    notes = [NO_PAPER_NOTE, *_approximation_notes("e2e", rows, scores)]  # E2E's scorer: E2E's notes
    return {"task": OWN_TASK, "task_name": numbers["name"], "model_card": model_card, "paper": None,
            "scorer": numbers["scorer"], "units": numbers["units"], "rows": rows, "notes": notes,
            "meta": dict(meta or {}), "sources": dict(sources or {})}


def render_own_markdown(report: dict) -> str:
    from .report import _protocol_sections, _run_section, fmt_ours, metric_label, runs_label

    seeds = report.get("seeds")
    out = [f"# {report['task_name']}: our scores", "",
           f"Model card `{report['model_card']}`. Scorer: {report['scorer']}. No paper column: the "
           "LoRA paper has no numbers for this data.", "",
           f"| metric | {'ours' if seeds is None else 'ours (mean ± std)'} |", "|---|---:|"]
    for row in report["rows"]:
        out.append(f"| {metric_label(row['metric'], row['split'], row['higher_is_better'])} | "
                   f"{fmt_ours(row, row['decimals'] + 1)} |")
    if seeds is not None:
        out += ["", f"Ours is the mean ± sample standard deviation (n − 1) over {runs_label(len(seeds))} "
                    f"(seeds {', '.join(map(str, seeds))})."]
    signed = [row for row in report["rows"] if row.get("signature")]
    if signed:
        out += ["", "Signatures: " + "; ".join(f"{row['metric']} `{row['signature']}`" for row in signed) + "."]
    out += ["", f"Units: {report['units']}"]
    out += _protocol_sections(report)
    out += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    out += _run_section(report)
    return "\n".join(out) + "\n"
