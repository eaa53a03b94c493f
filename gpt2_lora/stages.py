"""The pipeline's stages on one run folder: prepare, train, beam, decode, score, report.

Each stage is skipped ("up to date") when its stamp in ``<run dir>/.stamps`` holds the same command and
its outputs are newer than its inputs (``gpt2_lora.stamps``). The stage CLIs are called in-process through
their ``main(argv)``; each call is echoed first as the equivalent shell command (``+ python -m ...``).
Training is reached only through ``gpt2_lora.train.main`` (or torchrun for several processes), and its
results are read back as files (``log.jsonl``, ``model.<step>.pt``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import stamps
from .errors import UserError
from .fileio import atomic_files
from .recipes import DecodeRecipe, ScoreRecipe

ROOT = Path(__file__).resolve().parent.parent   # the source checkout (eval/ lives here)


def say(*parts) -> None:
    print(*parts, flush=True)


def stage(title: str) -> None:
    say()
    say(f"=== {title} ===")


def call(label: list[str], main, argv: list[str], quiet: bool = False) -> None:
    """Run a CLI's ``main(argv)`` in this process, echoed as ``+ label argv``; its one-line errors stop us."""
    sys.stdout.flush()
    print("+ " + shlex.join([*label, *argv]), file=sys.stderr, flush=True)
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        code = main(argv)
    sys.stdout.flush()
    if code:
        raise UserError(f"{' '.join(label)} exited with status {code}")


def run_torchrun(nproc: int, argv: list[str]) -> None:
    """Training on several processes: torchrun is the one child process the pipeline starts for it."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "gpt2_lora.train", *argv]
    sys.stdout.flush()
    print("+ " + shlex.join(["torchrun", *command[3:]]), file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    code = subprocess.run(command, env=env).returncode
    if code:
        raise UserError(f"training under torchrun failed (exit status {code}); its messages are above")


def eval_main(script: str):
    """``main`` of a scorer in eval/ (they are scripts beside the package, not modules of it)."""
    path = ROOT / "eval" / script
    if not path.is_file():
        raise UserError(f"{path} is missing: the pipeline's scorers are read from a source checkout's eval/")
    spec = importlib.util.spec_from_file_location(f"_gpt2_lora_eval_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


# ------------------------------------------------------------------------------------------ training
def release_gpu_memory() -> None:
    """Training ran in this process: give its model, optimizer and CUDA graphs' memory back before beam search."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def read_log(work: Path) -> list[dict]:
    try:
        lines = (work / "log.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError):
        raise UserError(f"cannot read the training log {work / 'log.jsonl'}") from None


def checkpoint_at(work: Path, step: int) -> Path | None:
    """The newest of model.<step>.pt / .safetensors, or None."""
    found = [p for p in (work / f"model.{step}.pt", work / f"model.{step}.safetensors") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def final_checkpoint(work: Path) -> Path:
    """The checkpoint of the last step in this run's log."""
    records = read_log(work)
    step = max((r.get("step", 0) for r in records), default=0)
    found = checkpoint_at(work, step)
    if found is None:
        raise UserError(f"training finished at step {step} but wrote no {work / f'model.{step}.pt'}")
    return found


def epoch_ends(records: list[dict]) -> list[tuple[int, int, str]]:
    """(epoch, step, checkpoint file name) of each finished epoch, in epoch order: log.jsonl's epoch_end
    records, which training writes when it saves an epoch's last checkpoint (``RunDir.mark_epoch_end``).

    Nothing is inferred from the epoch numbers of train/eval records (training counts the epoch up before its
    epoch-end validation, and an --eval_interval validation at an epoch's last step stands for it, so those
    numbers do not say where an epoch ended).
    """
    ends: dict[int, tuple[int, str]] = {}
    for record in records:
        if record.get("event") == "epoch_end":  # a resumed epoch's record replaces the earlier one
            ends[int(record["epoch"])] = (int(record["step"]), str(record["checkpoint"]))
    return [(epoch, step, name) for epoch, (step, name) in sorted(ends.items())]


def valid_loss_at(records: list[dict], step: int) -> float | None:
    losses = [r["valid_loss"] for r in records if r.get("event") == "eval" and r.get("step") == step]
    return losses[-1] if losses else None


def stop_at_step(extras: list[str]) -> tuple[str | None, list[str]]:
    """``--stop_at_step N`` only pauses a run: (N or None, the other flags), so it stays out of signatures."""
    rest, value, skip = [], None, False
    for arg in extras:
        if skip:
            value, skip = arg, False
        elif arg == "--stop_at_step":
            skip = True
        elif arg.startswith("--stop_at_step="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return value, rest


@dataclass(frozen=True)
class Training:
    """What one training run is: its identity (signature, inputs) and the command that runs it."""

    work: Path
    signature: dict
    inputs: tuple[Path, ...]
    argv: tuple[str, ...]       # the gpt2_lora.train flags without --resume / --overwrite
    nproc: int = 1
    paused_at: str | None = None
    overwrite: bool = False


def train(training: Training, marks: stamps.StampDir) -> Path | None:
    """Train (or resume, or skip); the final checkpoint, or None when --stop_at_step paused the run."""
    work, sig = training.work, training.signature
    recorded = marks.read("checkpoint")
    if recorded and marks.up_to_date("train", sig, [recorded], training.inputs):
        say(f"up to date: {recorded}")
        return Path(recorded)
    mode = []
    if (work / "resume.pt").is_file():  # resume only a run of these settings that has not finished
        started = marks.read("train.started")
        if marks.read("train") is None and started == sig:
            mode = ["--resume"]
            say(f"resuming the unfinished run in {work}")
        elif started != sig and not training.overwrite:
            raise UserError(f"{work} holds a run of other settings; give another --work_dir, or --overwrite to "
                            "replace that run")
        else:
            mode = ["--overwrite"]
            say(f"training again from the start in {work} (no finished run of these settings and inputs)")
    marks.clear("train", "checkpoint")
    marks.write("train.started", sig)
    argv = [*training.argv, *mode]
    if training.nproc > 1:
        run_torchrun(training.nproc, argv)
    else:
        from . import train as train_cli  # torch and the model load only when training runs

        call(["python", "-m", "gpt2_lora.train"], train_cli.main, argv)
        release_gpu_memory()
    if training.paused_at is not None:
        say(f"training paused at --stop_at_step {training.paused_at}: run the same command without it to continue")
        return None
    checkpoint = final_checkpoint(work)
    marks.write("checkpoint", str(checkpoint))
    marks.write("train", sig)
    return checkpoint


# ------------------------------------------------------------------------------------------ decoding
@dataclass(frozen=True)
class Target:
    """A checkpoint to decode, and where its predictions, text and scores go."""

    checkpoint: Path
    out: Path                 # predict.<tag>.jsonl and eval.<tag>/ are written here
    prefix: str = ""          # stamp names of this target ("epoch2." for an epoch's checkpoint)
    label: str = ""           # "epoch 2, " in the stage titles


def beam(target: Target, decode: DecodeRecipe, model_argv: list[str], inputs: list[Path], marks: stamps.StampDir,
         device_argv: list[str]) -> Path:
    from . import beam as beam_cli

    predict = target.out / f"predict.{decode.tag}.jsonl"
    argv = [*decode.beam_flags(), *model_argv, "--work_dir", str(target.out), "--output_file", predict.name]
    name = f"{target.prefix}beam.{decode.tag}"
    if marks.up_to_date(name, argv, [predict], [target.checkpoint, *inputs]):
        say(f"up to date: {predict}")
    elif not target.checkpoint.is_file():
        raise UserError(f"{target.checkpoint} is gone (a scored epoch's checkpoint is removed under "
                        "--save_total_limit): decoding it again needs a new training run (--overwrite)")
    else:
        call(["python", "-m", "gpt2_lora.beam"], beam_cli.main, argv + device_argv)
        marks.write(name, argv)
    return predict


def run_marked(name: str, label: list[str], main, argv: list[str], outputs: list[Path], inputs: list[Path],
               marks: stamps.StampDir, shown: Path) -> None:
    """One decode or score command, skipped when its stamp and outputs are up to date."""
    if marks.up_to_date(name, argv, outputs, inputs):
        say(f"up to date: {shown}")
    else:
        call(label, main, argv)
        marks.write(name, argv)


def copy_report(out: Path, work: Path, tag: str) -> None:
    """eval.<tag>/report.{md,json} -> <work>/report.<tag>.{md,json}, both or neither."""
    sources = [out / "report.md", out / "report.json"]
    with atomic_files([work / f"report.{tag}.md", work / f"report.{tag}.json"], "wb") as handles:
        for source, handle in zip(sources, handles):
            with open(source, "rb") as f:
                shutil.copyfileobj(f, handle)


def update_headline(work: Path, tag: str) -> None:
    """report.{md,json}: the headline decoding's report, refreshed when that one is newer."""
    for ext in ("md", "json"):
        source, target = work / f"report.{tag}.{ext}", work / f"report.{ext}"
        if not target.is_file() or source.stat().st_mtime_ns > target.stat().st_mtime_ns:
            with atomic_files([target], "wb") as (handle,), open(source, "rb") as f:
                shutil.copyfileobj(f, handle)


@dataclass(frozen=True)
class TextFiles:
    """The reference/hypothesis files of one decoding and filter, and the scores file made from them."""

    refs: Path         # E2E: a file; WebNLG/DART: a folder of reference0..N-1
    hyps: Path
    scores: Path
    ref_folder: bool

    @property
    def written(self) -> list[Path]:
        return [self.refs / "reference0" if self.ref_folder else self.refs, self.hyps]


def text_files(score: ScoreRecipe, folder: Path, filter_: str) -> TextFiles:
    if score.kind == "e2e":
        return TextFiles(folder / "ref.txt", folder / "pred.txt", folder / "scores.json", False)
    return TextFiles(folder / f"refs_{filter_}", folder / f"hyp_{filter_}", folder / f"scores_{filter_}.json", True)


def decode_text(score: ScoreRecipe, predict: Path, formatted: Path, files: TextFiles, filter_: str,
                vocab: Path | None, marks: stamps.StampDir, name: str) -> None:
    from . import decode as decode_cli

    argv = [*(["--vocab", str(vocab)] if vocab else []), "--sample_file", str(predict), "--input_file",
            str(formatted), *score.decode_flags(filter_), "--output_ref_file", str(files.refs),
            "--output_pred_file", str(files.hyps)]
    run_marked(name, ["python", "-m", "gpt2_lora.decode"], decode_cli.main, argv, files.written,
               [predict, formatted], marks, files.hyps)


def score_text(score: ScoreRecipe, files: TextFiles, marks: stamps.StampDir, name: str) -> None:
    if score.kind == "e2e":
        argv = [str(files.refs), str(files.hyps), *score.scorer_flags]
    else:
        argv = ["-R", str(files.refs / "reference"), "-H", str(files.hyps), *score.scorer_flags]
    argv += ["--json", str(files.scores)]
    script = ROOT / "eval" / score.scorer
    run_marked(name, ["python", str(script)], eval_main(score.scorer), argv, [files.scores], files.written,
               marks, files.scores)


def report_flags(score: ScoreRecipe, scores: dict[str, Path]) -> list[str]:
    """gpt2_lora.report's --scores (one filter) or --scores_<filter> (WebNLG's seen/unseen/all)."""
    if len(score.filters) == 1:
        return ["--scores", str(scores[score.filters[0]])]
    return [arg for f in score.filters for arg in (f"--scores_{f}", str(scores[f]))]


def write_report(argv: list[str], meta: dict, out: Path, work: Path, tag: str, inputs: list[Path],
                 marks: stamps.StampDir, name: str) -> None:
    """eval.<tag>/report.{md,json} from the scores, copied to <work>/report.<tag>.{md,json}."""
    from . import report as report_cli

    outputs = [out / "report.md", out / "report.json", work / f"report.{tag}.md", work / f"report.{tag}.json"]
    meta_file = marks.path(f"meta.{name}")
    argv = [*argv, "--meta", str(meta_file)]
    signature = {"argv": argv, "meta": meta}
    if marks.up_to_date(name, signature, outputs, inputs):
        say(f"up to date: {work / f'report.{tag}.md'}")
        return
    stamps.write(meta_file, meta)
    call(["python", str(ROOT / "eval" / "report.py")], report_cli.main, argv, quiet=True)
    copy_report(out, work, tag)
    marks.write(name, signature)
