"""Decode and score one run of the miniature experiment (CPU work, kept free of torch so that it can run
in a worker process while the GPU trains the next run).

The stage CLIs are driven in-process through their ``main(argv)``: ``gpt2_lora.decode`` turns the beam
predictions into scorer inputs, then ``eval/measure_scores.py -p`` (E2E) or ``eval/eval.py`` with the
seen / unseen / all filters (WebNLG), exactly as ``scripts/run_pipeline.sh`` calls them. A scorer that
cannot run here (no nltk for WebNLG's tokenisation, say) leaves ``scores`` empty with the reason; the
scorer inputs are kept, so ``rescore_inputs`` can score them on another machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

from . import decode
from .errors import UserError
from .fileio import atomic_write

ROOT = Path(__file__).resolve().parent.parent
E2E_METRICS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")
WEBNLG_FILTERS = ("seen", "unseen", "all")  # the paper's S / U / A
WEBNLG_REFS = 6
SCORES_FILE = "scores.json"


def scorer_inputs(task: str) -> tuple[list[str], list[str]]:
    """(reference files, hypothesis files) of a run folder, relative to it."""
    if task == "e2e":
        return ["ref.txt"], ["pred.txt"]
    refs = [f"refs_{f}/reference{i}" for f in WEBNLG_FILTERS for i in range(WEBNLG_REFS)]
    return refs, [f"hyp_{f}" for f in WEBNLG_FILTERS]


@lru_cache(maxsize=None)
def _script(name: str):
    """eval/<name>.py of this checkout, loaded as a module (eval/ is a folder of scripts, not a package)."""
    path = ROOT / "eval" / f"{name}.py"
    if not path.is_file():
        raise UserError(f"{path} is missing: the miniature experiment runs from a source checkout")
    spec = importlib.util.spec_from_file_location(f"_gpt2_lora_eval_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def decode_run(task: str, run_dir: Path, test_formatted: Path, vocab: str | None) -> None:
    """predict.jsonl -> the scorer inputs of ``scorer_inputs(task)``, through gpt2_lora.decode."""
    common = (["--vocab", vocab] if vocab else []) + ["--sample_file", str(run_dir / "predict.jsonl"),
                                                      "--input_file", str(test_formatted)]
    if task == "e2e":
        decode.main.__wrapped__(common + ["--output_ref_file", str(run_dir / "ref.txt"),
                                          "--output_pred_file", str(run_dir / "pred.txt")])
        return
    for f in WEBNLG_FILTERS:
        decode.main.__wrapped__(common + ["--ref_type", "webnlg", "--ref_num", str(WEBNLG_REFS), "--filter", f,
                                          "--tokenize", "--lower", "--output_ref_file", str(run_dir / f"refs_{f}"),
                                          "--output_pred_file", str(run_dir / f"hyp_{f}")])


def score_inputs(task: str, run_dir: Path) -> dict:
    """The scorer inputs in ``run_dir`` -> {"scores": {metric: value}, "approximate": [...]}; a scorer that
    cannot run here gives {"scores": None, "error": why}."""
    try:
        if task == "e2e":
            _script("measure_scores").main.__wrapped__(
                [str(run_dir / "ref.txt"), str(run_dir / "pred.txt"), "-p", "--json", str(run_dir / "e2e.json")])
            raw = json.loads((run_dir / "e2e.json").read_text(encoding="utf-8"))
            return {"scores": {m: raw[m] for m in E2E_METRICS}, "approximate": raw.get("approximate", [])}
        scores = {}
        for f in WEBNLG_FILTERS:
            out = run_dir / f"webnlg_{f}.json"
            _script("eval").main.__wrapped__(["-R", str(run_dir / f"refs_{f}" / "reference"), "-H",
                                              str(run_dir / f"hyp_{f}"), "-nr", str(WEBNLG_REFS), "-m",
                                              "bleu,meteor,ter", "--json", str(out)])
            raw = json.loads(out.read_text(encoding="utf-8"))
            tag = f[0].upper()  # S / U / A
            scores.update({f"BLEU-{tag}": raw["bleu"], f"METEOR-{tag}": raw["meteor"], f"TER-{tag}": raw["ter"]})
        return {"scores": scores, "approximate": []}
    except (UserError, ImportError) as err:
        return {"scores": None, "error": f"{type(err).__name__}: {err}"}


def score_run(task: str, run_dir: str, test_formatted: str, vocab: str | None) -> dict:
    """Decode and score one run folder; the result is also written to ``run_dir/scores.json``.
    Runs in a worker process: its scorers' printing goes to ``run_dir/score.log``."""
    run_dir = Path(run_dir)
    with open(run_dir / "score.log", "w", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        decode_run(task, run_dir, Path(test_formatted), vocab)
        result = score_inputs(task, run_dir)
    with atomic_write(run_dir / SCORES_FILE) as handle:
        json.dump(result, handle, indent=1)
    return result


def read_inputs(task: str, run_dir: Path, which: str) -> dict[str, str]:
    """The references or the hypotheses (``which``) of a decoded run, as {relative path: text}."""
    paths = scorer_inputs(task)[0 if which == "references" else 1]
    return {p: (run_dir / p).read_text(encoding="utf-8") for p in paths}


def rescore_inputs(task: str, run_dir: Path, references: dict[str, str], hypotheses: dict[str, str]) -> dict:
    """Write stored scorer inputs into ``run_dir`` and score them here (``--rescore``)."""
    for rel, text in {**references, **hypotheses}.items():
        path = run_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        return score_inputs(task, run_dir)
