"""The pipeline's settings: ``PipelineConfig`` (frozen), built once from the command line with one-line errors.

Options are checked in the order the shell pipeline checked them, defaults are resolved here (the weights of
the card, the work dir's {task}/{card}/{size}), and train flags after ``--`` that name a pipeline option set it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import recipes
from .cli import Parser
from .errors import UserError
from .recipes import TaskRecipe
from .stages import ROOT

STAGES = ("prepare", "train", "beam", "decode", "score", "report")
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
    from . import pipeline

    p = _Parser(prog="python -m gpt2_lora.pipeline TASK", description=pipeline.__doc__, allow_abbrev=False,
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
