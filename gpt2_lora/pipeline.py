"""One command from data to report, with the paper's settings (``gpt2_lora.recipes``):
prepare -> train -> beam search on the test set -> decode to text -> score -> report.

    python -m gpt2_lora.pipeline TASK [options] [-- extra gpt2_lora.train flags]    (gpt2-lora-run)

TASK: e2e | webnlg | dart. Outputs in the work dir: model.<step>.pt, loss.png, log.jsonl,
predict.<tag>.jsonl, eval.<tag>/, report.md + report.json (the headline decoding, length penalty 0.8)
and report.<tag>.{md,json} per decoding setting (E2E also length penalty 0.9).

Each stage is skipped ("up to date") when its outputs exist, are newer than its inputs and were made by
the same command (recorded in <work dir>/.stamps), so an interrupted run continues where it stopped: an
unfinished training run resumes from <work dir>/resume.pt. A finished run of other settings in the work
dir is never replaced without --overwrite. Train flags after -- that name a pipeline option (e.g.
--init_checkpoint, --lora_dim, --precision) set that option.

--seeds 110,111,112: one run per seed in <work dir>/seed<N>/, each decoded, scored and reported; with
several GPUs visible they run in parallel, one process per GPU. --eval_epochs: also decode and score the
checkpoint of every epoch (<run dir>/epochs/epoch<E>/, summed up in <run dir>/epochs.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from . import recipes, stamps
from .cli import Parser
from .errors import UserError, cli
from .recipes import TaskRecipe
from .stages import ROOT, Target, say, stage
from . import stages

STAGES = ("prepare", "train", "beam", "decode", "score", "report")
# Training keeps every checkpoint today. With --save_total_limit (another branch) epoch-end checkpoints are
# kept only with this flag: then this becomes ["--keep_epoch_checkpoints"].
EPOCH_CHECKPOINT_FLAGS: list[str] = []
USAGE = "usage: python -m gpt2_lora.pipeline e2e|webnlg|dart [options] [-- train flags] (see --help)"


def project_root() -> Path:
    """Default folders (data/, runs/, pretrained_checkpoints/) are in the source checkout, else here."""
    return ROOT if (ROOT / "setup.cfg").is_file() else Path.cwd()


@dataclass(frozen=True)
class PipelineConfig:
    recipe: TaskRecipe                 # the task's recipe, with --lora_dim / --lora_alpha applied
    model_card: str                    # a card name, or the absolute path of an HF config.json
    init_checkpoint: Path | None       # pretrained weights (None: random init, for in-process callers)
    work_dir: Path
    data: Path                         # the data root holding the task's folder
    device: str | None = None
    beam_precision: str = "fp32"
    overwrite: bool = False
    precision: str | None = None       # None: fp32 on the CPU, bf16 on CUDA
    cuda_graphs: bool | None = None    # None: on CUDA unless --compile
    compile: str | None = None
    batching: str = "dynamic"
    max_tokens: int | None = None
    residual: str | None = None
    packed_attention: str | None = None
    nproc: int = 1
    stages: tuple[str, ...] = STAGES
    seeds: tuple[int, ...] = ()        # empty: one run in work_dir with the recipe's seed
    eval_epochs: bool = False
    train_extra: tuple[str, ...] = ()
    seed_worker: bool = False          # one seed of a parallel --seeds run (no aggregate)

    @property
    def task(self) -> str:
        return self.recipe.name

    @property
    def data_dir(self) -> Path:
        return self.data / self.recipe.data_dir

    @property
    def vocab(self) -> Path | None:
        return self.data / "gpt2" if (self.data / "gpt2" / "encoder.json").is_file() else None

    @property
    def card_is_file(self) -> bool:
        return self.model_card not in recipes.CARDS

    def on_cpu(self) -> bool:
        if self.device is not None:
            return self.device == "cpu"
        import torch

        return not torch.cuda.is_available()

    def runs(self) -> list[tuple[int | None, Path]]:
        """(seed, run dir) of each training run."""
        if not self.seeds:
            return [(None, self.work_dir)]
        return [(seed, self.work_dir / f"seed{seed}") for seed in self.seeds]

    def to_argv(self, **changes) -> list[str]:
        """The command line that gives this config (with ``changes``): how a seed's own process is started."""
        c = dataclasses.replace(self, **changes)
        argv = [c.task, "--model_card", c.model_card, "--work_dir", str(c.work_dir), "--data", str(c.data),
                "--lora_dim", str(c.recipe.train.lora_dim), "--lora_alpha", str(c.recipe.train.lora_alpha),
                "--beam_precision", c.beam_precision, "--batching", c.batching, "--nproc", str(c.nproc),
                "--stages", ",".join(c.stages)]
        for name in ("init_checkpoint", "device", "precision", "compile", "max_tokens", "residual",
                     "packed_attention"):
            if getattr(c, name) is not None:
                argv += [f"--{name}", str(getattr(c, name))]
        if c.cuda_graphs is not None:
            argv.append("--cuda_graphs" if c.cuda_graphs else "--no_cuda_graphs")
        argv += [flag for flag, on in (("--overwrite", c.overwrite), ("--eval_epochs", c.eval_epochs),
                                       ("--seed_worker", c.seed_worker)) if on]
        if c.seeds:
            argv += ["--seeds", ",".join(map(str, c.seeds))]
        return [*argv, "--", *c.train_extra]


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
    if config.eval_epochs:
        flags += EPOCH_CHECKPOINT_FLAGS
    return flags + (["--device", config.device] if config.device else [])


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
    argv = [*identity, "--work_dir", str(run.work), *speed_flags(c), *c.train_extra]
    return stages.Training(run.work, signature, tuple(inputs), tuple(argv), c.nproc, paused_at, c.overwrite)


def recorded_checkpoint(run: Run, train: stages.Training) -> Path:
    """Without the train stage: the checkpoint an earlier run of these settings finished with."""
    recorded = run.marks.read("checkpoint")
    if not recorded or not run.marks.up_to_date("train", train.signature, [recorded], train.inputs):
        raise UserError(f"no finished training of these settings in {run.work}: run the train stage "
                        "(leave it in --stages)")
    return Path(recorded)


def prepare(config: PipelineConfig) -> None:
    """Encode from the source files when they are here (prepare says 'up to date' itself), else check the data."""
    d = config.data_dir
    stage(f"1/6 prepare ({config.task})")
    if (d / config.recipe.raw_file).is_file():
        from . import prepare as prepare_cli

        argv = ["--task", config.recipe.prepare_task, "--src", str(d), "--out", str(d)]
        prepare_cli.main(argv + (["--vocab", str(config.vocab)] if config.vocab else []))
        return
    for split in ("train", "valid", "test"):
        if not (d / f"{split}.jsonl").is_file():
            raise UserError(f"no {config.task} data in {d} (no source files, no {split}.jsonl): run "
                            "scripts/download_data.sh (offline: --mirror DIR), or pass --data")
    if not (d / "test_formatted.jsonl").is_file():
        raise UserError(f"{d}/test_formatted.jsonl is missing (decoding needs it): run scripts/download_data.sh")
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
    for decode in c.recipe.decodes:
        decode_target(run, Target(checkpoint, run.work), decode, steps)
    if "report" in c.stages:
        stages.update_headline(run.work, c.recipe.headline.tag)
    if c.eval_epochs:
        from .runs import evaluate_epochs

        evaluate_epochs(run, checkpoint)
    return run.work / "report.md" if "report" in c.stages else None


def model_argv(run: Run, checkpoint: Path) -> list[str]:
    c, train = run.config, run.config.recipe.train
    weights = ["--init_checkpoint", str(checkpoint)]
    if train.lora_dim > 0 and c.init_checkpoint:   # a LoRA-only checkpoint goes over its base
        weights += ["--base_checkpoint", str(c.init_checkpoint)]
    return ["--data", str(c.data_dir / "test.jsonl"), "--model_card", c.model_card, *weights,
            "--lora_dim", str(train.lora_dim), "--lora_alpha", str(train.lora_alpha),
            "--precision", c.beam_precision]


def decode_target(run: Run, target: Target, decode: recipes.DecodeRecipe, steps: int) -> dict[str, Path]:
    """Beam, decode, score and report one checkpoint with one decoding setting; its scores files by filter."""
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
    if "report" in c.stages and not target.prefix:
        stage(f"6/6 report ({tag})")
        report(run, target, decode, scores, steps)
    return scores


def report(run: Run, target: Target, decode: recipes.DecodeRecipe, scores: dict[str, Path], steps: int) -> None:
    c, train = run.config, run.config.recipe.train
    meta = {"model_config": c.model_card, "init_checkpoint": str(c.init_checkpoint or ""),
            "checkpoint": str(target.checkpoint),
            "lora": f"r={train.lora_dim}, alpha={train.lora_alpha}" if train.lora_dim else "none (full fine-tuning)",
            "decoding": decode.describe(), "data": str(c.data_dir)}
    if run.seed is not None:
        meta["seed"] = run.seed
    if (run.work / "loss.png").is_file():
        meta["loss_curve"] = str(run.work / "loss.png")
    out = target.out / f"eval.{decode.tag}"
    argv = ["--task", c.recipe.report_task, *stages.report_flags(c.recipe.score, scores), "--model_card",
            c.model_card, "--out_dir", str(out), "--work_dir", str(run.work), "--steps", str(steps)]
    stages.write_report(argv, meta, out, run.work, decode.tag, list(scores.values()), run.marks, f"report.{decode.tag}")


# ------------------------------------------------------------------------------------------ all runs
def run(config: PipelineConfig) -> list[Path]:
    """Every run of the config; their headline reports (none when a run paused or no report was asked for)."""
    from .runs import run_seeds

    if "prepare" in config.stages:
        prepare(config)
    runs = [Run(config, seed, work) for seed, work in config.runs()]
    reports = run_seeds(runs) if config.seeds else [run_one(runs[0])]
    return [] if any(r is None for r in reports) else reports


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
    from .runs import aggregate_seed_reports

    say()
    for seed, path in zip(config.seeds, reports):
        say(f"report of seed {seed}: {path} (+ report.json{extra})")
    aggregated = aggregate_seed_reports(config.work_dir, reports, config.seeds)
    if aggregated is not None:
        say(aggregated.read_text(encoding="utf-8"))
        say(f"report over the seeds: {aggregated}")


# ------------------------------------------------------------------------------------------ CLI
class _Parser(Parser):
    def error(self, message):
        missing = re.match(r"argument (--\w+).*: expected one argument", message)
        raise UserError(f"{missing.group(1)} needs a value" if missing else f"{message} (see --help)")


def add_options(p: argparse.ArgumentParser, suppress: bool = False) -> None:
    """The pipeline's options; with ``suppress``, only the given ones are set (for the train flags after --)."""
    d = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
    a = p.add_argument
    a("--model_card", default=d("gpt2.md"), help="gpt2.sm | gpt2.md | gpt2.lg, or a path to an HF config.json")
    a("--init_checkpoint", default=d(None), help="pretrained GPT-2 weights [$GPT2_CKPT, else the file "
      "scripts/download_pretrained_checkpoints.sh writes for the card]")
    a("--work_dir", default=d(None), help="run folder; {task}, {card} and {size} (S/M/L) are filled in "
      "[runs/{task}_{card}]")
    a("--data", default=d(None), help="data root holding e2e/, webnlg_challenge_2017/, dart/ [data]")
    a("--lora_dim", default=d(None), help="LoRA rank (0 = full fine-tuning) [the recipe's: 4]")
    a("--lora_alpha", default=d(None), help="LoRA alpha [the recipe's: 32]")
    a("--device", default=d(None), help="cpu, cuda, cuda:N [CUDA when present]")
    a("--beam_precision", default=d("fp32"), help="fp32 (the parity path) or bf16 [fp32]")
    a("--overwrite", action="store_true", default=d(False),
      help="replace a run of other settings in the work dir (without it, such a run is never touched)")
    g = p.add_argument_group("training speed (gpt2_lora.train's flags; environment of the shell wrappers)")
    g.add_argument("--precision", default=d(None), help="fp32, bf16 or fp16 [fp32 on the CPU, else bf16] (PRECISION)")
    g.add_argument("--cuda_graphs", dest="cuda_graphs", action="store_true", default=d(None),
                   help="the whole step as one CUDA graph [on with CUDA, unless --compile] (GRAPHS=1)")
    g.add_argument("--no_cuda_graphs", dest="cuda_graphs", action="store_false", default=d(None),
                   help="the eager step (GRAPHS=0)")
    g.add_argument("--compile", nargs="?", const="default", default=d(None), metavar="MODE",
                   help="torch.compile instead of CUDA graphs (COMPILE=1 or a mode)")
    g.add_argument("--batching", default=d("dynamic"), help="dynamic, padded, bucketed or packed [dynamic] (BATCHING)")
    g.add_argument("--max_tokens", default=d(None), help="token budget per batch, bucketed/packed (MAX_TOKENS)")
    g.add_argument("--residual", default=d(None), help="fp32 or bf16 residual stream (RESIDUAL)")
    g.add_argument("--packed_attention", default=d(None), help="mask or varlen, with packed (PACKED_ATTENTION)")
    g.add_argument("--nproc", default=d("1"), help="GPUs; above 1 training runs under torchrun [1] (NPROC)")
    r = p.add_argument_group("what to run")
    r.add_argument("--stages", default=d(",".join(STAGES)), help=f"comma-separated subset of {','.join(STAGES)}")
    r.add_argument("--seeds", default=d(None), help="comma-separated seeds: one run each in <work_dir>/seed<N>/")
    r.add_argument("--eval_epochs", action="store_true", default=d(False),
                   help="also decode and score every epoch's checkpoint")
    r.add_argument("--seed_worker", action="store_true", default=d(False), help=argparse.SUPPRESS)


def build_parser(suppress: bool = False) -> argparse.ArgumentParser:
    p = _Parser(prog="python -m gpt2_lora.pipeline TASK", description=__doc__, allow_abbrev=False,
                formatter_class=argparse.RawDescriptionHelpFormatter, add_help=not suppress)
    add_options(p, suppress)
    return p


def lift_train_flags(extras: list[str]) -> tuple[dict, list[str]]:
    """Pipeline options among the train flags after -- (they win, as later flags do); the other flags."""
    given, rest = build_parser(suppress=True).parse_known_args(extras)
    rest = [a for a in rest if a != "--resume"]  # the pipeline resumes an unfinished run of these settings itself
    return vars(given), rest


def _whole(value: str, flag: str, low: int, what: str) -> int:
    if not re.fullmatch(r"[0-9]+", value) or int(value) < low:
        raise UserError(f"{flag} must be {what}, got '{value}'")
    return int(value)


def _choice(value: str, flag: str, choices) -> str:
    if value not in choices:
        raise UserError(f"{flag} must be {' or '.join(choices)}, got '{value}'")
    return value


def _card(value: str) -> tuple[str, str]:
    """(the card, or the config.json's absolute path; its size tag)."""
    if value in recipes.CARDS:
        return value, recipes.CARDS[value].size
    if not Path(value).is_file():
        raise UserError(f"--model_card {value}: not a card ({'|'.join(recipes.CARDS)}) nor a config.json file")
    return str(Path(value).resolve()), "custom"


def _init_checkpoint(value: str | None, card: str) -> Path:
    value = value or os.environ.get("GPT2_CKPT") or None
    if value is None:
        if card not in recipes.CARDS:
            raise UserError(f"--model_card {card} is a config.json: pass --init_checkpoint (or set GPT2_CKPT)")
        value = str(project_root() / recipes.CARDS[card].pretrained_file)
    if not os.path.lexists(value):
        raise UserError(f"no pretrained GPT-2 weights at '{value}': run scripts/download_pretrained_checkpoints.sh, "
                        "set GPT2_CKPT or pass --init_checkpoint")
    return Path(value).absolute()


def _list(value: str, flag: str, known=None) -> tuple:
    items = tuple(v.strip() for v in value.split(","))
    if not all(items) or len(set(items)) != len(items) or (known and not set(items) <= set(known)):
        expected = f"a comma-separated subset of {','.join(known)}" if known else "comma-separated whole numbers"
        raise UserError(f"{flag} must be {expected}, got '{value}'")
    return items


def _seeds(value: str | None, extras: list[str]) -> tuple[int, ...]:
    if value is None:
        return ()
    seeds = _list(value, "--seeds")
    if not all(re.fullmatch(r"[0-9]+", s) for s in seeds):
        raise UserError(f"--seeds must be comma-separated whole numbers (e.g. 110,111,112), got '{value}'")
    if any(a == "--random_seed" or a.startswith("--random_seed=") for a in extras):
        raise UserError("--random_seed among the train flags contradicts --seeds; give the seeds with --seeds")
    return tuple(map(int, seeds))


def config_from(task: TaskRecipe, v: dict, extras: list[str]) -> PipelineConfig:
    """Check every option (one-line errors, in the order the shell pipeline checked them) and resolve defaults."""
    for name, value in v.items():
        if value == "":
            raise UserError(f"--{name} needs a value")
    lora_dim = _whole(v["lora_dim"] or str(task.train.lora_dim), "--lora_dim", 0, "a whole number >= 0")
    alpha = v["lora_alpha"] or str(task.train.lora_alpha)
    if not re.fullmatch(r"[0-9]+([.][0-9]+)?", alpha):
        raise UserError(f"--lora_alpha must be a positive number, got '{alpha}'")
    if float(alpha) != int(float(alpha)):
        raise UserError(f"--lora_alpha must be a whole number (gpt2_lora.train takes an int), got '{alpha}'")
    _choice(v["beam_precision"], "--beam_precision", ("fp32", "bf16"))
    card, size = _card(v["model_card"])
    card_name = Path(card).name[:-len(".json")] if card.endswith(".json") else Path(card).name
    work = v["work_dir"] or str(project_root() / "runs" / "{task}_{card}")
    for key, filled in (("{task}", task.name), ("{card}", card_name), ("{size}", size)):
        work = work.replace(key, filled)
    if Path(work).exists() and not Path(work).is_dir():
        raise UserError(f"--work_dir {work}: is a file, not a folder")
    train = dataclasses.replace(task.train, lora_dim=lora_dim, lora_alpha=int(float(alpha)))
    return PipelineConfig(
        recipe=dataclasses.replace(task, train=train), model_card=card,
        init_checkpoint=_init_checkpoint(v["init_checkpoint"], card), work_dir=Path(work).absolute(),
        data=Path(v["data"] or project_root() / "data").absolute(), device=v["device"],
        beam_precision=v["beam_precision"], overwrite=v["overwrite"],
        precision=v["precision"], cuda_graphs=v["cuda_graphs"], compile=v["compile"], batching=v["batching"],
        max_tokens=None if v["max_tokens"] is None else _whole(v["max_tokens"], "--max_tokens", 1, "a number >= 1"),
        residual=v["residual"], packed_attention=v["packed_attention"],
        nproc=_whole(v["nproc"], "--nproc", 1, "a number of GPUs"), stages=_list(v["stages"], "--stages", STAGES),
        seeds=_seeds(v["seeds"], extras), eval_epochs=v["eval_epochs"], train_extra=tuple(extras),
        seed_worker=v["seed_worker"])


def parse_args(argv: list[str]) -> PipelineConfig | None:
    """The config of a command line; None after --help."""
    if not argv:
        raise UserError(USAGE)
    if argv[0] in ("-h", "--help"):
        print(build_parser().format_help())
        return None
    try:
        task = recipes.task(argv[0])
    except UserError as err:
        raise UserError(f"{err} ({USAGE})") from None
    own, extras = (argv[1:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv[1:], [])
    args, unknown = build_parser().parse_known_args(own)
    if unknown:
        raise UserError(f"unknown option '{unknown[0]}' (see --help; training flags go after --)")
    lifted, extras = lift_train_flags(extras)
    return config_from(task, {**vars(args), **lifted}, extras)


@cli
def main(argv: list[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else list(argv))
    if config is None:
        return 0
    reports = run(config)
    if not config.seed_worker:
        print_summary(config, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
