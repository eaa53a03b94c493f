"""One command from data to report, with the paper's settings (``gpt2_lora.recipes``):
prepare -> train -> beam search on the test set -> decode to text -> score -> report.

    python -m gpt2_lora.pipeline TASK [options] [-- extra gpt2_lora.train flags]    (gpt2-lora-run)
    python -m gpt2_lora.pipeline custom --data DIR [--src ROWS] [options]         (your own data)
    python -m gpt2_lora.pipeline paper [--cards md,lg] [--tasks e2e,webnlg,dart] [--seeds ...] [options]

TASK: e2e | webnlg | dart. Outputs in the work dir: model.<step>.pt, loss.png, log.jsonl,
predict.<tag>.jsonl, eval.<tag>/, report.md + report.json (the headline decoding, length penalty 0.8)
and report.<tag>.{md,json} per decoding setting (E2E also length penalty 0.9).

custom: your own data in --data DIR (what `prepare --task custom --out DIR` wrote; with --src ROWS the pipeline
prepares it first, with --context_field, --completion_field, --split, --split_seed). E2E's recipe, the headline
decoding, E2E's metrics plus sacreBLEU and chrF; the report has no paper column (the paper has no numbers).

Each stage is skipped ("up to date") when its outputs exist, are newer than its inputs and were made by
the same command (recorded in <work dir>/.stamps), so an interrupted run continues where it stopped: an
unfinished training run resumes from <work dir>/resume.pt. A finished run of other settings in the work
dir is never replaced without --overwrite. Train flags after -- that name a pipeline option (e.g.
--init_checkpoint, --lora_dim, --precision) set that option.

--seeds 110,111,112: one run per seed in <work dir>/seed<N>/, each decoded, scored and reported; with
several GPUs visible they run in parallel, one process per GPU; then <work dir>/report.{md,json} (and
report.<tag>.*) hold the mean ± sample std over the seeds. --eval_epochs: also decode and score the checkpoint
of every epoch (<run dir>/epochs/epoch<E>/, the records in <run dir>/epochs.<tag>.json), and the report holds
the per-epoch table, its headline from the epoch --select picks (final, best_valid, best_test).

paper: every task x card in <work dir>/<task>_<card>/ (with its seeds), then <work dir>/paper_report.{md,json}:
the paper's Tables 3, 13 and 14 with ours beside its LoRA rows.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from . import recipes, stages, stamps
from .errors import UserError, cli
from .pipeline_config import PipelineConfig, parse_args
from .stages import Target, say, stage

# With --eval_epochs, training keeps every epoch's checkpoint whatever --save_total_limit says (until scored).
EPOCH_CHECKPOINT_FLAGS: list[str] = ["--keep_epoch_checkpoints"]


# ------------------------------------------------------------------------------------------ one run
@dataclass(frozen=True)
class Run:
    config: PipelineConfig
    seed: int | None
    work: Path

    @property
    def marks(self) -> stamps.StampDir:
        return stamps.StampDir(self.work / ".stamps")

    @property
    def train_recipe(self) -> recipes.TrainRecipe:
        train = self.config.recipe.train
        return train if self.seed is None else dataclasses.replace(train, random_seed=self.seed)


def speed_flags(config: PipelineConfig) -> list[str]:
    """How fast and where training runs; kept out of the run's signature (they do not change what is trained)."""
    cpu = config.on_cpu()
    flags = ["--precision", config.precision or ("fp32" if cpu else "bf16")]
    for name in ("residual", "packed_attention"):
        if getattr(config, name) is not None:
            flags += [f"--{name}", getattr(config, name)]
    if config.compile is not None:
        flags += ["--compile", config.compile]
    elif config.cuda_graphs if config.cuda_graphs is not None else not cpu:
        flags.append("--cuda_graphs")
    return flags + (["--device", config.device] if config.device else [])


def retention_flags(config: PipelineConfig) -> list[str]:
    """Which checkpoints training keeps; also kept out of the signature (they do not change what is trained)."""
    limit = [] if config.save_total_limit is None else ["--save_total_limit", str(config.save_total_limit)]
    return limit + (EPOCH_CHECKPOINT_FLAGS if config.eval_epochs else [])


def training(run: Run) -> stages.Training:
    c = run.config
    paused_at, extras = stages.stop_at_step(list(c.train_extra))
    identity = ["--train_data", str(c.data_dir / "train.jsonl"), "--valid_data", str(c.data_dir / "valid.jsonl"),
                *run.train_recipe.train_flags(), "--model_card", c.model_card,
                *(["--init_checkpoint", str(c.init_checkpoint)] if c.init_checkpoint else []),
                "--batching", c.batching, *(["--max_tokens", str(c.max_tokens)] if c.max_tokens else [])]
    signature = {"task": c.task, "data": str(c.data_dir), "flags": identity, "nproc": c.nproc, "extra": extras}
    inputs = [c.data_dir / "train.jsonl", c.data_dir / "valid.jsonl",
              *([c.init_checkpoint] if c.init_checkpoint else []), *([Path(c.model_card)] if c.card_is_file else [])]
    argv = [*identity, "--work_dir", str(run.work), *speed_flags(c), *retention_flags(c), *c.train_extra]
    return stages.Training(run.work, signature, tuple(inputs), tuple(argv), c.nproc, paused_at, c.overwrite)


def recorded_checkpoint(run: Run, train: stages.Training) -> Path:
    """Without the train stage: the checkpoint an earlier run of these settings finished with."""
    recorded = run.marks.read("checkpoint")
    if not recorded or not run.marks.up_to_date("train", train.signature, [recorded], train.inputs):
        raise UserError(f"no finished training of these settings in {run.work}: run the train stage "
                        "(leave it in --stages)")
    return Path(recorded)


def prepare(config: PipelineConfig) -> None:
    """Encode from the source files when they are here (prepare says 'up to date' itself), else check the data;
    custom: prepare --src into --data, or check the folder."""
    d, own = config.data_dir, config.own_data
    stage(f"1/6 prepare ({config.task})")
    if own is not None or (config.recipe.raw_file and (d / config.recipe.raw_file).is_file()):
        from . import prepare as prepare_cli

        source = own.prepare_flags() if own is not None else ["--src", str(d)]
        argv = ["--task", config.recipe.prepare_task, *source, "--out", str(d)]
        prepare_cli.main(argv + (["--vocab", str(config.vocab)] if config.vocab else []))
        return
    if config.task == recipes.CUSTOM.name:
        hint = f"python -m gpt2_lora.prepare --task custom --src ROWS --out {d}, or pass --src ROWS"
    else:
        hint = "scripts/download_data.sh (offline: --mirror DIR), or pass --data"
    for split in ("train", "valid", "test"):
        if not (d / f"{split}.jsonl").is_file():
            raise UserError(f"no {config.task} data in {d} (no source files, no {split}.jsonl): run {hint}")
    if not (d / "test_formatted.jsonl").is_file():
        raise UserError(f"{d}/test_formatted.jsonl is missing (decoding needs it): run {hint}")
    say(f"up to date: {d} holds encoded data only (no source files to prepare from)")


def run_one(run: Run) -> Path | None:
    """Train, then decode, score and report the final checkpoint (and each epoch's, with --eval_epochs); the
    headline report, or None when the run paused or the stages stop before the report."""
    c = run.config
    (run.work / ".stamps").mkdir(parents=True, exist_ok=True)
    train = training(run)
    if "train" in c.stages:
        stage("2/6 train")
        checkpoint = stages.train(train, run.marks)
    else:
        checkpoint = recorded_checkpoint(run, train) if set(c.stages) - {"prepare"} else None
    if checkpoint is None or not set(c.stages) & {"beam", "decode", "score", "report"}:
        return None
    steps = int(checkpoint.name.split(".")[1])
    for decode in c.recipe.decodes:  # with --eval_epochs, the report comes from every epoch's scores
        decode_target(run, Target(checkpoint, run.work), decode, steps, report_it=not c.eval_epochs)
    if c.eval_epochs:
        from .runs import evaluate_epochs

        evaluate_epochs(run, checkpoint)
    if "report" in c.stages:
        stages.update_headline(run.work, c.recipe.headline.tag)
    return run.work / "report.md" if "report" in c.stages else None


def model_argv(run: Run, checkpoint: Path) -> list[str]:
    c, train = run.config, run.config.recipe.train
    weights = ["--init_checkpoint", str(checkpoint)]
    if train.lora_dim > 0 and c.init_checkpoint:   # a LoRA-only checkpoint goes over its base
        weights += ["--base_checkpoint", str(c.init_checkpoint)]
    return ["--data", str(c.data_dir / "test.jsonl"), "--model_card", c.model_card, *weights,
            "--lora_dim", str(train.lora_dim), "--lora_alpha", str(train.lora_alpha),
            "--precision", c.beam_precision]


def decode_target(run: Run, target: Target, decode: recipes.DecodeRecipe, steps: int,
                  report_it: bool = True) -> dict[str, Path]:
    """Beam, decode, score and (``report_it``) report one checkpoint with one decoding setting; its scores
    files by filter."""
    c, tag, score = run.config, decode.tag, run.config.recipe.score
    folder = target.out / f"eval.{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    predict = target.out / f"predict.{tag}.jsonl"
    if "beam" in c.stages:
        stage(f"3/6 beam search ({target.label}{tag}: beam {decode.beam}, length penalty {decode.length_penalty}, "
              f"no-repeat {decode.no_repeat_ngram_size})")
        inputs = [p for p in (c.init_checkpoint, c.data_dir / "test.jsonl") if p]
        predict = stages.beam(target, decode, model_argv(run, target.checkpoint), inputs, run.marks,
                              ["--device", c.device] if c.device else [])
    files = {f: stages.text_files(score, folder, f) for f in score.filters}
    if "decode" in c.stages:
        stage(f"4/6 decode to text ({target.label}{tag})")
        for f, text in files.items():
            stages.decode_text(score, predict, c.data_dir / "test_formatted.jsonl", text, f, c.vocab, run.marks,
                               f"{target.prefix}decode.{tag}.{f}")
    if "score" in c.stages:
        stage(f"5/6 score ({target.label}{tag})")
        for f, text in files.items():
            stages.score_text(score, text, run.marks, f"{target.prefix}score.{tag}.{f}")
    scores = {f: text.scores for f, text in files.items()}
    if "report" in c.stages and not target.prefix and report_it:
        stage(f"6/6 report ({tag})")
        report(run, target, decode, scores, steps)
    return scores


def report_meta(run: Run, decode: recipes.DecodeRecipe) -> dict:
    """What a run's report records about it; "decoding" and "lora" are what reports over seeds compare."""
    c, train = run.config, run.config.recipe.train
    meta = {"model_config": c.model_card, "init_checkpoint": str(c.init_checkpoint or ""),
            "lora": f"r={train.lora_dim}, alpha={train.lora_alpha}" if train.lora_dim else "none (full fine-tuning)",
            "decoding": decode.describe(), "data": str(c.data_dir)}
    if run.seed is not None:
        meta["seed"] = run.seed
    if (run.work / "loss.png").is_file():
        meta["loss_curve"] = str(run.work / "loss.png")
    return meta


def report(run: Run, target: Target, decode: recipes.DecodeRecipe, scores: dict[str, Path], steps: int) -> None:
    c = run.config
    meta = {**report_meta(run, decode), "checkpoint": str(target.checkpoint)}
    out = target.out / f"eval.{decode.tag}"
    argv = ["--task", c.recipe.report_task, *stages.report_flags(c.recipe.score, scores), "--model_card",
            c.model_card, "--out_dir", str(out), "--work_dir", str(run.work), "--steps", str(steps)]
    stages.write_report(argv, meta, out, run.work, decode.tag, list(scores.values()), run.marks, f"report.{decode.tag}")


# ------------------------------------------------------------------------------------------ all runs
def run(config: PipelineConfig) -> list[Path]:
    """Every run of the config, then (``--seeds``) the report over the seeds; the runs' headline reports (none
    when a run paused or no report was asked for)."""
    from .runs import aggregate_seed_reports, run_seeds

    if "prepare" in config.stages:
        prepare(config)
    runs = [Run(config, seed, work) for seed, work in config.runs()]
    reports = run_seeds(runs) if config.seeds else [run_one(runs[0])]
    if any(r is None for r in reports):
        return []
    if config.seeds and not config.seed_worker:  # a seed's own process leaves this to the one that started it
        aggregate_seed_reports(config, reports)
    return reports


def print_summary(config: PipelineConfig, reports: list[Path]) -> None:
    if not reports:
        return
    extra = "".join(f"; length penalty {d.length_penalty}: report.{d.tag}.md" for d in config.recipe.decodes[1:])
    if not config.seeds:
        say()
        say(reports[0].read_text(encoding="utf-8"))
        say(f"report: {reports[0]} (+ report.json{extra})")
        if (reports[0].parent / "loss.png").is_file():
            say(f"loss curve: {reports[0].parent / 'loss.png'}")
        return
    say()
    for seed, path in zip(config.seeds, reports):
        say(f"report of seed {seed}: {path} (+ report.json{extra})")
    aggregated = config.work_dir / "report.md"
    say(aggregated.read_text(encoding="utf-8"))
    say(f"report over the seeds: {aggregated} (+ report.json{extra})")


@cli
def main(argv: list[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else list(argv))
    if config is None:
        return 0
    if not isinstance(config, PipelineConfig):  # the paper command
        from .paper_runs import print_paper_summary, run_paper

        print_paper_summary(config, run_paper(config))
        return 0
    reports = run(config)
    if not config.seed_worker:
        print_summary(config, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
