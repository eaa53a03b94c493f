"""The pipeline's several runs: one per seed (``--seeds``), and every epoch's checkpoint (``--eval_epochs``).

Seeds run one after another in this process, or, with several GPUs visible (and one process per run), side
by side: one pipeline process per GPU (``CUDA_VISIBLE_DEVICES``), each with its log in its run dir. Their
reports are then averaged (``report_seeds.aggregate_reports``) into the work dir's report. Each epoch's
checkpoint is found through log.jsonl's epoch_end records (``RunDir.epoch_checkpoints``), scored, and the
per-epoch report built from the records (``report_epochs``, through the report CLI's ``--epochs``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from . import stages, stamps
from .errors import UserError
from .fileio import atomic_write
from .stages import ROOT, Target, say, stage


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


def aggregate_seed_reports(config, reports: list[Path]) -> Path:
    """The report over the seeds, per decoding: <work_dir>/report.<tag>.{md,json} (the mean, sample std and each
    seed's value: ``report_seeds.aggregate_reports``), and report.{md,json} for the headline decoding; skipped
    when the seeds' reports have not changed. ``reports``: each seed's headline report.md."""
    marks = stamps.StampDir(config.work_dir / ".stamps")
    marks.folder.mkdir(parents=True, exist_ok=True)
    for decode in config.recipe.decodes:
        seed_reports = [path.parent / f"report.{decode.tag}.json" for path in reports]
        stage(f"report over seeds {', '.join(map(str, config.seeds))} ({decode.tag})")
        aggregate_one(config.work_dir, decode.tag, list(config.seeds), seed_reports, marks)
    stages.update_headline(config.work_dir, config.recipe.headline.tag)
    return config.work_dir / "report.md"


def aggregate_one(work_dir: Path, tag: str, seeds: list[int], seed_reports: list[Path], marks) -> None:
    from .report import load_report, write_report
    from .report_seeds import aggregate_reports

    name, signature = f"report.seeds.{tag}", {"seeds": seeds, "reports": [str(p) for p in seed_reports]}
    outputs = [work_dir / f"report.{tag}.md", work_dir / f"report.{tag}.json"]
    if marks.up_to_date(name, signature, outputs, seed_reports):
        say(f"up to date: {outputs[0]}")
        return
    report = aggregate_reports([load_report(p) for p in seed_reports], seeds)
    for run, path in zip(report["runs"], seed_reports):
        run["sources"]["report"] = str(path)
    marks.clear(name)
    out = work_dir / f"eval.{tag}"  # as a single run's: eval.<tag>/report.*, copied to report.<tag>.*
    write_report(report, out)
    stages.copy_report(out, work_dir, tag)
    marks.write(name, signature)
    say(f"wrote {outputs[0]} (mean ± sample std over {len(seeds)} seeds)")


# ------------------------------------------------------------------------------------------ epochs
def score_values(paths: dict[str, Path]) -> dict[str, dict | None]:
    out = {}
    for filter_, path in paths.items():
        try:
            out[filter_] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            out[filter_] = None
    return out


def epoch_target(run, epoch: int, checkpoint: Path) -> Target:
    return Target(checkpoint, run.work / "epochs" / f"epoch{epoch}", f"epoch{epoch}.", f"epoch {epoch}, ")


def epoch_scores(run, epoch: int, step: int, checkpoint: Path, final_step: int, decode) -> dict[str, Path]:
    """The scores files of one epoch's checkpoint and one decoding (the final checkpoint's are done already)."""
    from .pipeline import decode_target

    score = run.config.recipe.score
    if step == final_step:
        return {f: stages.text_files(score, run.work / f"eval.{decode.tag}", f).scores for f in score.filters}
    target = epoch_target(run, epoch, checkpoint)
    if not checkpoint.is_file():  # removed after it was scored (--save_total_limit), or never kept
        paths = {f: stages.text_files(score, target.out / f"eval.{decode.tag}", f).scores for f in score.filters}
        if not all(p.is_file() for p in paths.values()):
            raise UserError(f"epoch {epoch}'s checkpoint {checkpoint} is gone and was not scored: train with "
                            "--eval_epochs from the start (--overwrite), which keeps every epoch's checkpoint")
    return decode_target(run, target, decode, step)


def epoch_record(epoch: int, step: int, valid_loss, paths: dict[str, Path], base: Path) -> dict:
    """One epoch record of the report contract (DESIGN.md), its scores as paths relative to ``base``."""
    relative = {f: os.path.relpath(p, base) for f, p in paths.items()}
    scores = relative["all"] if list(relative) == ["all"] else relative  # WebNLG: one file per category
    return {"epoch": epoch, "step": step, "valid_loss": valid_loss, "scores": scores}


def write_if_changed(path: Path, value) -> None:
    """The records are an input of the report stage: rewritten only when they change."""
    text = json.dumps(value, indent=1) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        with atomic_write(path) as handle:
            handle.write(text)


def evaluate_epochs(run, final: Path) -> Path:
    """Decode and score each epoch's checkpoint (log.jsonl's epoch_end records name them), then write
    <run dir>/epochs.<tag>.json (the epoch records) and epochs.json (all decodings), the per-epoch report of
    each decoding (its headline: the epoch --select picks), and prune the scored checkpoints under
    --save_total_limit."""
    records = stages.read_log(run.work)
    ends = stages.epoch_ends(records)
    if not ends:
        raise UserError(f"--eval_epochs: {run.work / 'log.jsonl'} records no finished epoch (the run stopped "
                        "within its first epoch, or was trained by an older version: --overwrite)")
    from .training.rundir import RunDir

    on_disk, final_step = RunDir(run.work).epoch_checkpoints(), int(final.name.split(".")[1])
    if final_step not in {step for _, step, _ in ends}:
        say(f"note: the final checkpoint (step {final_step}) ends no epoch: the per-epoch table has the "
            f"{len(ends)} finished epoch(s)")
    recipe, summary = run.config.recipe, []
    by_tag: dict[str, list] = {d.tag: [] for d in recipe.decodes}
    files: dict[str, list[Path]] = {d.tag: [] for d in recipe.decodes}
    for epoch, step, name in ends:
        checkpoint, loss, scores = on_disk.get(epoch, run.work / name), stages.valid_loss_at(records, step), {}
        for decode in recipe.decodes:
            paths = epoch_scores(run, epoch, step, checkpoint, final_step, decode)
            scores[decode.tag] = score_values(paths)
            by_tag[decode.tag].append(epoch_record(epoch, step, loss, paths, run.work))
            files[decode.tag] += paths.values()
        summary.append({"epoch": epoch, "step": step, "checkpoint": str(checkpoint), "valid_loss": loss,
                        "scores": scores})
    for tag, tag_records in by_tag.items():
        write_if_changed(run.work / f"epochs.{tag}.json", tag_records)
    write_if_changed(run.work / "epochs.json", summary)
    say(f"scores of every epoch: {run.work / 'epochs.json'}")
    if "report" in run.config.stages:
        for decode in recipe.decodes:
            epoch_report(run, decode, files[decode.tag])
    if all(p.is_file() for paths in files.values() for p in paths):
        prune_scored(run)
    return run.work / "epochs.json"


def epoch_report(run, decode, score_files: list[Path]) -> None:
    """report.<tag>.{md,json} from the epoch records: the per-epoch table, the headline from --select's epoch."""
    from .pipeline import report_meta

    c, tag = run.config, decode.tag
    stage(f"6/6 report ({tag}, every epoch; headline: {c.select})")
    records, out = run.work / f"epochs.{tag}.json", run.work / f"eval.{tag}"
    argv = ["--task", c.recipe.report_task, "--epochs", str(records), "--select", c.select, "--model_card",
            c.model_card, "--out_dir", str(out), "--work_dir", str(run.work)]
    stages.write_report(argv, report_meta(run, decode), out, run.work, tag, [records, *score_files], run.marks,
                        f"report.{tag}")


def retention_limit(config) -> int:
    """The step checkpoints to keep once scored: --save_total_limit, else training's default (0: all)."""
    if config.save_total_limit is not None:
        return config.save_total_limit
    from .training.flags import FULL_FINETUNE_SAVE_LIMIT

    return FULL_FINETUNE_SAVE_LIMIT if config.recipe.train.lora_dim == 0 else 0


def prune_scored(run) -> list[Path]:
    """Every epoch is scored: remove the step checkpoints beyond the limit as training would have, never the one
    resume.pt continues from (RunDir.prune) nor model.best.*."""
    limit = retention_limit(run.config)
    if not limit:
        return []
    from .training.rundir import RunDir

    run_dir = RunDir(run.work, save_total_limit=limit)
    run_dir.load_resume()  # which step resume.pt holds: that checkpoint stays
    removed = run_dir.prune()
    if removed:
        say(f"removed {len(removed)} scored checkpoint(s) beyond --save_total_limit {limit}: "
            f"{', '.join(p.name for p in removed)}")
    return removed
