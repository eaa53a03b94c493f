"""The pipeline's several runs: one per seed (``--seeds``), and every epoch's checkpoint (``--eval_epochs``).

Seeds run one after another in this process, or, with several GPUs visible (and one process per run), side
by side: one pipeline process per GPU (``CUDA_VISIBLE_DEVICES``), each with its log in its run dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from . import stages
from .errors import UserError
from .fileio import atomic_write
from .stages import ROOT, Target, say


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them."""
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [x.strip() for x in listed.split(",") if x.strip()] if listed else [str(i) for i in range(count)]
    return names[:count]


def seed_slots(config) -> list[str]:
    """The GPUs to run seeds side by side on; empty when they run one after another."""
    if len(config.seeds) < 2 or config.nproc > 1 or config.device not in (None, "cuda"):
        return []
    gpus = visible_gpus()
    return gpus if len(gpus) > 1 else []


def run_seeds(runs: list) -> list[Path | None]:
    """Every seed's run; their headline reports (None for a run that paused)."""
    from .pipeline import run_one

    config = runs[0].config
    gpus = seed_slots(config)
    if not gpus:
        if len(runs) > 1:
            say(f"seeds {', '.join(str(r.seed) for r in runs)}: one after another in this process (GPUs "
                f"visible: {len(visible_gpus())}; side by side needs 2 or more and one process per run)")
        return [run_one(run) for run in runs]
    say(f"seeds {', '.join(str(r.seed) for r in runs)}: in parallel, one process per GPU (GPUs {', '.join(gpus)}); "
        f"each run's log is <run dir>/pipeline.log")
    results = []
    for start in range(0, len(runs), len(gpus)):
        results += run_side_by_side(runs[start:start + len(gpus)], gpus)
    return results


def seed_command(run) -> list[str]:
    """The pipeline process of one seed (the data is already prepared)."""
    config = run.config
    argv = config.to_argv(seeds=(run.seed,), seed_worker=True,
                          stages=tuple(s for s in config.stages if s != "prepare"))
    return [sys.executable, "-m", "gpt2_lora.pipeline", *argv]


def run_side_by_side(runs: list, gpus: list[str]) -> list[Path | None]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = []
    for run, gpu in zip(runs, gpus):
        run.work.mkdir(parents=True, exist_ok=True)
        log = open(run.work / "pipeline.log", "w", encoding="utf-8")
        say(f"seed {run.seed} on GPU {gpu}: {run.work / 'pipeline.log'}")
        process = subprocess.Popen(seed_command(run), env={**env, "CUDA_VISIBLE_DEVICES": gpu}, stdout=log,
                                   stderr=subprocess.STDOUT)
        started.append((run, process, log))
    failed = []
    for run, process, log in started:
        code = process.wait()
        log.close()
        if code:
            lines = (run.work / "pipeline.log").read_text(encoding="utf-8", errors="replace").splitlines()
            failed.append(f"seed {run.seed} (exit status {code}: {lines[-1] if lines else 'no output'})")
    if failed:
        raise UserError(f"{'; '.join(failed)}; see each run's pipeline.log")
    return [seed_result(run) for run in runs]


def seed_result(run) -> Path | None:
    """A seed process's headline report, or None when its training paused (no finished-training stamp)."""
    finished = run.marks.read("train") is not None
    report = run.work / "report.md"
    return report if finished and report.is_file() and "report" in run.config.stages else None


def aggregate_seed_reports(work_dir: Path, reports: list[Path], seeds) -> Path | None:
    """One report over the seeds (mean ± std) in <work_dir>/report.{md,json}; its markdown path.

    ``gpt2_lora.report.aggregate_reports(reports, seeds)`` is written on another branch. Until it is merged,
    the seeds' own reports are the result and nothing is written here; afterwards the ``return None`` below
    becomes ``return write_report(aggregate_reports(loaded, seeds), work_dir)[0]``.
    """
    loaded = [json.loads(path.with_suffix(".json").read_text(encoding="utf-8")) for path in reports]
    del loaded, work_dir, seeds
    return None


# ------------------------------------------------------------------------------------------ epochs
def score_values(paths: dict[str, Path]) -> dict[str, dict | None]:
    out = {}
    for filter_, path in paths.items():
        try:
            out[filter_] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            out[filter_] = None
    return out


def evaluate_epochs(run, final: Path) -> Path:
    """Decode and score each epoch's checkpoint (the last epoch's is the final one, already done);
    <run dir>/epochs.json lists each epoch's step, checkpoint, validation loss and scores."""
    from .pipeline import decode_target

    records = stages.read_log(run.work)
    recipe = run.config.recipe
    summary = []
    for epoch, step in stages.epoch_ends(records):
        checkpoint = stages.checkpoint_at(run.work, step)
        if checkpoint is None:
            raise UserError(f"epoch {epoch}'s checkpoint {run.work / f'model.{step}.pt'} is gone: train with "
                            "--eval_epochs from the start (--overwrite)")
        scores = {}
        for decode in recipe.decodes:
            if checkpoint == final:
                paths = {f: stages.text_files(recipe.score, run.work / f"eval.{decode.tag}", f).scores
                         for f in recipe.score.filters}
            else:
                target = Target(checkpoint, run.work / "epochs" / f"epoch{epoch}", f"epoch{epoch}.", f"epoch {epoch}, ")
                paths = decode_target(run, target, decode, step)
            scores[decode.tag] = score_values(paths)
        summary.append({"epoch": epoch, "step": step, "checkpoint": str(checkpoint),
                        "valid_loss": stages.valid_loss_at(records, step), "scores": scores})
    path = run.work / "epochs.json"
    with atomic_write(path) as handle:
        json.dump(summary, handle, indent=1)
        handle.write("\n")
    say(f"scores of every epoch: {path}")
    return path
