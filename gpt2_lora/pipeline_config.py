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
from .report_inputs import RULES
from .stages import ROOT

STAGES = ("prepare", "train", "beam", "decode", "score", "report")
USAGE = "usage: python -m gpt2_lora.pipeline e2e|webnlg|dart|custom|paper [options] [-- train flags] (see --help)"
OWN_DATA_OPTIONS = ("src", "context_field", "completion_field", "split", "split_seed")  # custom only
PAPER_OPTIONS = ("cards", "tasks")  # paper only


def project_root() -> Path:
    """Default folders (data/, runs/, pretrained_checkpoints/) are in the source checkout, else here."""
    return ROOT if (ROOT / "setup.cfg").is_file() else Path.cwd()


@dataclass(frozen=True)
class OwnData:
    """``custom --src``: your rows, prepared into the --data folder first (``prepare --task custom``)."""

    src: Path
    context_field: str = "context"
    completion_field: str = "completion"
    split: str | None = None           # TRAIN,VALID,TEST fractions as given (prepare checks them)
    split_seed: int = 0

    def prepare_flags(self) -> list[str]:
        """prepare's flags for these options (its --random_seed is the split's seed)."""
        return ["--src", str(self.src), "--context_field", self.context_field, "--completion_field",
                self.completion_field, *(["--split", self.split] if self.split else []),
                "--random_seed", str(self.split_seed)]

    def pipeline_flags(self) -> list[str]:
        """The pipeline options that give these settings."""
        return [*self.prepare_flags()[:-2], "--split_seed", str(self.split_seed)]


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
    select: str = "final"              # the epoch of the headline (with --eval_epochs): final|best_valid|best_test
    save_total_limit: int | None = None  # None: training's default (2 with full fine-tuning, else all); 0: all
    vocab_dir: Path | None = None      # --vocab (None: the data root's gpt2/, else the tokenizer's default)
    own_data: OwnData | None = None    # custom --src: prepare these rows first
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
        if self.vocab_dir is not None:
            return self.vocab_dir
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
                     "packed_attention", "save_total_limit"):
            if getattr(c, name) is not None:
                argv += [f"--{name}", str(getattr(c, name))]
        if c.cuda_graphs is not None:
            argv.append("--cuda_graphs" if c.cuda_graphs else "--no_cuda_graphs")
        argv += [flag for flag, on in (("--overwrite", c.overwrite), ("--eval_epochs", c.eval_epochs),
                                       ("--seed_worker", c.seed_worker)) if on]
        argv += ["--select", c.select, *(["--vocab", str(c.vocab_dir)] if c.vocab_dir else [])]
        if c.own_data:
            argv += c.own_data.pipeline_flags()
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
    a("--model_card", default=d(None), help="gpt2.sm | gpt2.md | gpt2.lg, or a path to an HF config.json [gpt2.md]")
    a("--init_checkpoint", default=d(None), help="pretrained GPT-2 weights [$GPT2_CKPT, else the file "
      "scripts/download_pretrained_checkpoints.sh writes for the card]")
    a("--work_dir", default=d(None), help="run folder; {task}, {card} and {size} (S/M/L) are filled in "
      "[runs/{task}_{card}]")
    a("--data", default=d(None), help="data root holding e2e/, webnlg_challenge_2017/, dart/ [data]; custom: "
      "the folder `prepare --task custom --out DIR` wrote (or writes, with --src)")
    a("--vocab", default=d(None), help="folder with GPT-2's encoder.json and vocab.bpe [the data root's gpt2/, else "
      "$GPT2_LORA_VOCAB, else the checkout's data/gpt2]")
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
                   help="also decode and score every epoch's checkpoint (the report gets the per-epoch table)")
    r.add_argument("--select", default=d(None), help=f"with --eval_epochs, the epoch of the headline: "
                   f"{', '.join(RULES)} (the paper's rule: best test BLEU) [final]")
    r.add_argument("--save_total_limit", default=d(None), help="step checkpoints kept (0: all); with --eval_epochs, "
                   "the epochs' are removed beyond it once scored [training's: 2 with --lora_dim 0, else all]")
    r.add_argument("--seed_worker", action="store_true", default=d(False), help=argparse.SUPPRESS)
    o = p.add_argument_group("custom: your own data (see README, 'Your own data')")
    o.add_argument("--src", default=d(None), help="your rows (.jsonl/.csv/.tsv file, or a folder with train.*, "
                   "valid.*, test.*): prepared into --data first (prepare --task custom)")
    o.add_argument("--context_field", default=d(None), help="with --src: the input's field [context]")
    o.add_argument("--completion_field", default=d(None), help="with --src: the text to generate [completion]")
    o.add_argument("--split", default=d(None), help="with --src (one file): TRAIN,VALID,TEST fractions of the "
                   "distinct contexts [0.9,0.05,0.05]")
    o.add_argument("--split_seed", default=d(None), help="with --src: the split's seed [0]")
    q = p.add_argument_group("paper: the three tables in one command")
    q.add_argument("--cards", default=d(None), help="comma-separated subset of md,lg [md,lg]; or one --model_card")
    q.add_argument("--tasks", default=d(None), help="comma-separated subset of e2e,webnlg,dart [all three]")


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


def comma_list(value: str, flag: str, known=None) -> tuple:
    items = tuple(v.strip() for v in value.split(","))
    if not all(items) or len(set(items)) != len(items) or (known and not set(items) <= set(known)):
        expected = f"a comma-separated subset of {','.join(known)}" if known else "comma-separated whole numbers"
        raise UserError(f"{flag} must be {expected}, got '{value}'")
    return items


def _seeds(value: str | None, extras: list[str]) -> tuple[int, ...]:
    if value is None:
        return ()
    seeds = [s.strip() for s in value.split(",")]
    if not all(re.fullmatch(r"[0-9]+", s) for s in seeds):
        raise UserError(f"--seeds must be comma-separated whole numbers (e.g. 110,111,112), got '{value}'")
    twice = next((s for i, s in enumerate(seeds) if int(s) in map(int, seeds[:i])), None)
    if twice is not None:
        raise UserError(f"--seeds {value}: seed {int(twice)} is given twice")
    if any(a == "--random_seed" or a.startswith("--random_seed=") for a in extras):
        raise UserError("--random_seed among the train flags contradicts --seeds; give the seeds with --seeds")
    return tuple(map(int, seeds))


def _lora(task: TaskRecipe, v: dict) -> recipes.TrainRecipe:
    lora_dim = _whole(v["lora_dim"] or str(task.train.lora_dim), "--lora_dim", 0, "a whole number >= 0")
    alpha = v["lora_alpha"] or str(task.train.lora_alpha)
    if not re.fullmatch(r"[0-9]+([.][0-9]+)?", alpha):
        raise UserError(f"--lora_alpha must be a positive number, got '{alpha}'")
    if float(alpha) != int(float(alpha)):
        raise UserError(f"--lora_alpha must be a whole number (gpt2_lora.train takes an int), got '{alpha}'")
    return dataclasses.replace(task.train, lora_dim=lora_dim, lora_alpha=int(float(alpha)))


def _work_dir(value: str | None, task: TaskRecipe, card: str, size: str) -> Path:
    card_name = Path(card).name[:-len(".json")] if card.endswith(".json") else Path(card).name
    work = value or str(project_root() / "runs" / "{task}_{card}")
    for key, filled in (("{task}", task.name), ("{card}", card_name), ("{size}", size)):
        work = work.replace(key, filled)
    if Path(work).exists() and not Path(work).is_dir():
        raise UserError(f"--work_dir {work}: is a file, not a folder")
    return Path(work).absolute()


def _data(task: TaskRecipe, v: dict) -> Path:
    if task.name == recipes.CUSTOM.name and v["data"] is None:
        raise UserError("custom needs --data DIR: the folder `python -m gpt2_lora.prepare --task custom --out DIR` "
                        "wrote, or (with --src FILE) the folder to prepare your rows into")
    return Path(v["data"] or project_root() / "data").absolute()


def _own_data(task: TaskRecipe, v: dict) -> OwnData | None:
    """custom's --src and prepare's options; refused for the paper's tasks, and without --src."""
    given = [name for name in OWN_DATA_OPTIONS if v.get(name) is not None]
    if task.name != recipes.CUSTOM.name:
        if given:
            raise UserError(f"--{given[0]} is for the custom task (your own data), not {task.name}")
        return None
    if v["src"] is None:
        if given:
            raise UserError(f"--{given[0]} is a setting of --src (the rows to prepare): give --src too")
        return None
    if not Path(v["src"]).exists():
        raise UserError(f"--src {v['src']}: no such file or folder")
    if v["split"] is not None:
        from .custom_data import parse_split

        parse_split(v["split"])  # one line now, rather than after the other checks
    return OwnData(Path(v["src"]).absolute(), v["context_field"] or "context", v["completion_field"] or "completion",
                   v["split"], _whole(v["split_seed"] or "0", "--split_seed", 0, "a whole number >= 0"))


def _selection(v: dict) -> str:
    rule = _choice(v["select"] or "final", "--select", RULES)
    if rule != "final" and not v["eval_epochs"]:
        raise UserError(f"--select {rule} picks one of the epochs' checkpoints: add --eval_epochs")
    return rule


def config_from(task: TaskRecipe, v: dict, extras: list[str]) -> PipelineConfig:
    """Check every option (one-line errors, in the order the shell pipeline checked them) and resolve defaults."""
    for name, value in v.items():
        if value == "":
            raise UserError(f"--{name} needs a value")
    given = [name for name in PAPER_OPTIONS if v.get(name) is not None]
    if given:
        raise UserError(f"--{given[0]} is an option of the paper command (python -m gpt2_lora.pipeline paper)")
    train = _lora(task, v)
    _choice(v["beam_precision"], "--beam_precision", ("fp32", "bf16"))
    card, size = _card(v["model_card"] or "gpt2.md")
    work = _work_dir(v["work_dir"], task, card, size)
    limit = v["save_total_limit"]
    return PipelineConfig(
        recipe=dataclasses.replace(task, train=train), model_card=card,
        init_checkpoint=_init_checkpoint(v["init_checkpoint"], card), work_dir=work, data=_data(task, v),
        device=v["device"], beam_precision=v["beam_precision"], overwrite=v["overwrite"],
        precision=v["precision"], cuda_graphs=v["cuda_graphs"], compile=v["compile"], batching=v["batching"],
        max_tokens=None if v["max_tokens"] is None else _whole(v["max_tokens"], "--max_tokens", 1, "a number >= 1"),
        residual=v["residual"], packed_attention=v["packed_attention"],
        nproc=_whole(v["nproc"], "--nproc", 1, "a number of GPUs"),
        stages=comma_list(v["stages"], "--stages", STAGES),
        seeds=_seeds(v["seeds"], extras), eval_epochs=v["eval_epochs"], select=_selection(v),
        save_total_limit=None if limit is None else _whole(limit, "--save_total_limit", 0,
                                                           "a whole number >= 0 (0 keeps every checkpoint)"),
        vocab_dir=None if v["vocab"] is None else Path(v["vocab"]).absolute(), own_data=_own_data(task, v),
        train_extra=tuple(extras), seed_worker=v["seed_worker"])


def split_argv(argv: list[str]) -> tuple[dict, list[str]]:
    """The options of a command line after its TASK (every option, None where not given), and the train flags."""
    own, extras = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    args, unknown = build_parser().parse_known_args(own)
    if unknown:
        raise UserError(f"unknown option '{unknown[0]}' (see --help; training flags go after --)")
    lifted, extras = lift_train_flags(extras)
    return {**vars(args), **lifted}, extras


def parse_args(argv: list[str]):
    """The config of a command line: a ``PipelineConfig``, or for ``paper`` a ``paper_runs.PaperConfig``;
    None after --help."""
    if not argv:
        raise UserError(USAGE)
    if argv[0] in ("-h", "--help"):
        print(build_parser().format_help())
        return None
    if argv[0] == "paper":
        from .paper_runs import paper_config  # builds on this module

        return paper_config(*split_argv(argv[1:]))
    if argv[0] != recipes.CUSTOM.name and argv[0] not in recipes.TASKS:
        raise UserError(f"TASK must be {', '.join(list(recipes.TASKS)[:-1])} or {list(recipes.TASKS)[-1]} (the "
                        f"paper's), {recipes.CUSTOM.name} (your own data) or paper (all of the paper's runs), got "
                        f"'{argv[0]}' ({USAGE})")
    return config_from(recipes.task(argv[0]), *split_argv(argv[1:]))
