"""The paper's settings as data: the one place they are written.

Per task (E2E, WebNLG 2017, DART): the training hyper-parameters (Hu et al. 2021, Table 11, and the
commands of microsoft/LoRA examples/NLG/README.md), the decoding settings, the scorer with its flags,
and where the data lives; and the GPT-2 cards' pretrained files. ``gpt2_lora.pipeline``, the shell
scripts (through the CLI below), ``scripts/gpu_validation.sh`` and the benchmarks read them from here.

    python -m gpt2_lora.recipes train-flags e2e     # the gpt2_lora.train flags, one line
    python -m gpt2_lora.recipes beam-flags e2e      # the gpt2_lora.beam flags of the task's first decoding
    python -m gpt2_lora.recipes length-penalties e2e   # 0.8 0.9: the length penalty of each decoding
    python -m gpt2_lora.recipes data-dir webnlg     # webnlg_challenge_2017
    python -m gpt2_lora.recipes hf-name gpt2.md     # gpt2-medium (also: sm, md, lg)
    python -m gpt2_lora.recipes value e2e train.lora_alpha    # one setting (train.*, headline.*, score.*)
    python -m gpt2_lora.recipes show [TASK]         # everything, as JSON

Your own data (``CUSTOM``, the pipeline's ``custom`` task: a folder that ``prepare --task custom`` wrote, E2E's
layers) gets E2E's training recipe, the headline decoding and E2E's metrics plus sacreBLEU and chrF; it is kept
out of ``TASKS`` (the paper's tasks, which the tests hold against the paper).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass

from . import data
from .errors import UserError, cli


def _flags(pairs) -> list[str]:
    """``--name value`` for each set value; a True boolean is a bare ``--name``; None and False are left out."""
    out = []
    for name, value in pairs:
        if value is None or value is False:
            continue
        out.append(f"--{name}")
        if value is not True:
            out.append(str(value))
    return out


@dataclass(frozen=True)
class TrainRecipe:
    """gpt2_lora.train's flags for one task (upstream gpt2_ft.py names). None: the flag is not given."""

    train_batch_size: int = 8
    grad_acc: int = 1
    valid_batch_size: int = 4
    seq_len: int = 512
    clip: float = 0.0
    lr: float = 0.0002
    weight_decay: float = 0.01
    correct_bias: bool = True
    adam_beta2: float = 0.999
    scheduler: str = "linear"
    warmup_step: int = 500
    max_epoch: int | None = 5
    max_step: int | None = None
    save_interval: int = 1000
    log_interval: int | None = None    # None: gpt2_lora.train's default (100), as upstream's command
    eval_interval: int | None = None   # None: gpt2_lora.train's default (2000)
    lora_dim: int = 4
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    label_smooth: float = 0.1
    random_seed: int = 110

    def train_flags(self) -> list[str]:
        """The gpt2_lora.train flags (without data, model and work dir), in the upstream README's order."""
        return _flags((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))


@dataclass(frozen=True)
class DecodeRecipe:
    """gpt2_lora.beam's decoding flags (upstream gpt2_beam.py names); EOS 50256 is always one, 628 is added."""

    beam: int = 10
    length_penalty: float = 0.8
    no_repeat_ngram_size: int = 4
    repetition_penalty: float = 1.0
    eos_token_id: int = 628   # "\n\n": upstream's extra end-of-sequence token
    eval_len: int = 64
    seq_len: int = 512
    batch_size: int = 1

    @property
    def tag(self) -> str:
        """Upstream's file tag: beam 10, length penalty 0.8, no-repeat 4 -> ``b10p08r4``."""
        return f"b{self.beam}p{str(self.length_penalty).replace('.', '')}r{self.no_repeat_ngram_size}"

    def describe(self) -> str:
        return (f"beam {self.beam}, length penalty {self.length_penalty}, no-repeat-ngram "
                f"{self.no_repeat_ngram_size}, EOS {data.EOS_ID}/{self.eos_token_id}")

    def search_fields(self) -> dict:
        """The ``gpt2_lora.beam.BeamSettings`` fields of this recipe (EOS: 50256 and the extra one)."""
        return {"beam": self.beam, "eval_len": self.eval_len, "seq_len": self.seq_len,
                "length_penalty": self.length_penalty, "no_repeat_ngram_size": self.no_repeat_ngram_size,
                "repetition_penalty": self.repetition_penalty, "eos_token_id": (data.EOS_ID, self.eos_token_id)}

    def beam_flags(self) -> list[str]:
        return _flags([("batch_size", self.batch_size), ("seq_len", self.seq_len),
                       ("eval_len", self.eval_len), ("beam", self.beam), ("length_penalty", self.length_penalty),
                       ("no_repeat_ngram_size", self.no_repeat_ngram_size),
                       ("repetition_penalty", self.repetition_penalty), ("eos_token_id", self.eos_token_id)])


@dataclass(frozen=True)
class ScoreRecipe:
    """How hypotheses are decoded to text and scored.

    ``kind`` "e2e": one reference file (a blank line between instances), eval/measure_scores.py.
    ``kind`` "generationeval": ``ref_num`` reference files, eval/eval.py (GenerationEval), per ``filters``.
    """

    kind: str
    scorer: str                        # the script in eval/
    scorer_flags: tuple[str, ...] = ()
    ref_type: str = "e2e"              # gpt2_lora.decode --ref_type
    ref_num: int = 1
    filters: tuple[str, ...] = ("all",)
    tokenize_lower: bool = False       # decode's --tokenize --lower

    def decode_flags(self, filter_: str) -> list[str]:
        if self.kind == "e2e":
            return []
        return ["--ref_type", self.ref_type, "--ref_num", str(self.ref_num), "--filter", filter_,
                *(["--tokenize", "--lower"] if self.tokenize_lower else [])]


@dataclass(frozen=True)
class TaskRecipe:
    name: str                          # the pipeline's TASK
    title: str
    data_dir: str                      # folder inside the data root
    raw_file: str                      # the source file whose presence means "prepare from the raw data"
    prepare_task: str                  # gpt2_lora.prepare --task
    report_task: str                   # gpt2_lora.report --task (the paper table it is compared with)
    train: TrainRecipe
    decodes: tuple[DecodeRecipe, ...]  # the first one is the headline report (the upstream README's)
    score: ScoreRecipe

    @property
    def headline(self) -> DecodeRecipe:
        return self.decodes[0]


def _generationeval(task: str, filters: tuple[str, ...] = ("all",)) -> ScoreRecipe:
    return ScoreRecipe(kind="generationeval", scorer="eval.py", scorer_flags=("-nr", "6", "-m", "bleu,meteor,ter"),
                       ref_type=task, ref_num=6, filters=filters, tokenize_lower=True)


def _task(name: str, title: str, train: TrainRecipe, decodes: tuple[DecodeRecipe, ...],
          score: ScoreRecipe) -> TaskRecipe:
    return TaskRecipe(name=name, title=title, data_dir=data.SOURCE_SUBDIRS[name],
                      raw_file=data.SOURCE_FILES[name]["train"], prepare_task=name, report_task=name,
                      train=train, decodes=decodes, score=score)


PAPER_TRAIN = TrainRecipe()
# DART: no weight decay, no LoRA dropout, no label smoothing (Table 11)
DART_TRAIN = dataclasses.replace(PAPER_TRAIN, weight_decay=0.0, lora_dropout=0.0, label_smooth=0.0)
# length penalty 0.8 as the upstream README runs it; Table 11 gives E2E 0.9, so E2E decodes both
PAPER_DECODE = DecodeRecipe()
E2E = _task("e2e", "E2E NLG", PAPER_TRAIN, (PAPER_DECODE, dataclasses.replace(PAPER_DECODE, length_penalty=0.9)),
            ScoreRecipe(kind="e2e", scorer="measure_scores.py", scorer_flags=("-p",)))
WEBNLG = _task("webnlg", "WebNLG 2017", PAPER_TRAIN, (PAPER_DECODE,),
               _generationeval("webnlg", ("all", "seen", "unseen")))
DART = _task("dart", "DART", DART_TRAIN, (PAPER_DECODE,), _generationeval("dart"))
TASKS: dict[str, TaskRecipe] = {t.name: t for t in (E2E, WEBNLG, DART)}
# your own data: the folder given is the data (data_dir "."), prepared by `prepare --task custom`; one decoding
CUSTOM = dataclasses.replace(E2E, name="custom", title="your own data", data_dir=".", raw_file="",
                             prepare_task="custom", report_task="custom", decodes=(PAPER_DECODE,),
                             score=dataclasses.replace(E2E.score, scorer_flags=("-p", "--sacrebleu")))

# The demo (scripts/demo.sh), on the CPU in minutes: a tiny GPT-2 trained from random weights on the synthetic
# set stands in for the pretrained base; LoRA then follows the paper's recipe with a shorter schedule and a
# higher learning rate, logging often enough for a visible loss curve.
DEMO_MODEL = {"n_embd": 128, "n_layer": 2, "n_head": 4, "n_positions": 256, "n_ctx": 256, "vocab_size": 50257}
DEMO_SYNTHETIC_SIZES = {"train": 2000, "valid": 100, "test": 100}
_DEMO_TRAIN = dataclasses.replace(PAPER_TRAIN, train_batch_size=16, valid_batch_size=16, seq_len=256,
                                  eval_interval=100000, save_interval=100000)
DEMO_BASE = dataclasses.replace(_DEMO_TRAIN, lora_dim=0, lr=0.001, warmup_step=20, max_epoch=1, log_interval=10)
DEMO_LORA = dataclasses.replace(_DEMO_TRAIN, lr=0.002, warmup_step=10, max_epoch=None, max_step=80, log_interval=5)
DEMO = dataclasses.replace(E2E, train=DEMO_LORA, decodes=(dataclasses.replace(PAPER_DECODE, seq_len=256),))


@dataclass(frozen=True)
class Card:
    name: str        # gpt2.sm | gpt2.md | gpt2.lg
    hf_name: str     # the Hugging Face repository (and upstream's file prefix)
    size: str        # the paper's row letter: S, M, L

    @property
    def pretrained_file(self) -> str:
        """Where scripts/download_pretrained_checkpoints.sh puts the weights (upstream's name)."""
        return f"pretrained_checkpoints/{self.hf_name}-pytorch_model.bin"


CARDS: dict[str, Card] = {c.name: c for c in (Card("gpt2.sm", "gpt2", "S"), Card("gpt2.md", "gpt2-medium", "M"),
                                              Card("gpt2.lg", "gpt2-large", "L"))}


def task(name: str) -> TaskRecipe:
    """A paper task's recipe, or ``custom`` (your own data)."""
    if name == CUSTOM.name:
        return CUSTOM
    if name not in TASKS:
        raise UserError(f"TASK must be {', '.join(list(TASKS)[:-1])} or {list(TASKS)[-1]}, got '{name}' "
                        f"(or {CUSTOM.name}, for your own data)")
    return TASKS[name]


def card(name: str) -> Card:
    """A card by its name, or by its short name (sm, md, lg)."""
    full = name if name in CARDS else f"gpt2.{name}"
    if full not in CARDS:
        raise UserError(f"unknown model card '{name}': expected one of {', '.join(CARDS)} (or sm, md, lg)")
    return CARDS[full]


def setting(recipe: TaskRecipe, name: str):
    """``train.lora_alpha``, ``headline.beam``, ``score.ref_num``, ``data_dir``: one value of a task's recipe."""
    value = recipe
    for part in name.split("."):
        if not dataclasses.is_dataclass(value) or not hasattr(value, part):
            raise UserError(f"no setting '{name}' in the {recipe.name} recipe (see: python -m gpt2_lora.recipes show)")
        value = getattr(value, part)
    return value


def _show(recipe: TaskRecipe) -> dict:
    return {**dataclasses.asdict(recipe), "tags": [d.tag for d in recipe.decodes]}


# ------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    from .cli import Parser

    p = Parser(prog="python -m gpt2_lora.recipes", description="Print the paper's settings for shell scripts.")
    sub = p.add_subparsers(dest="what", required=True)
    for what, help_ in (("train-flags", "gpt2_lora.train flags"), ("beam-flags", "gpt2_lora.beam flags"),
                        ("length-penalties", "the length penalty of each decoding"),
                        ("data-dir", "the data folder"), ("raw-file", "the raw training file")):
        sub.add_parser(what, help=help_).add_argument("task")
    sub.add_parser("hf-name", help="a card's Hugging Face name").add_argument("card")
    value = sub.add_parser("value", help="one setting, e.g. train.lora_alpha or headline.length_penalty")
    value.add_argument("task")
    value.add_argument("name")
    sub.add_parser("show", help="everything, as JSON").add_argument("task", nargs="?")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.what == "hf-name":
        print(card(args.card).hf_name)
    elif args.what == "value":
        print(setting(task(args.task), args.name))
    elif args.what == "show":
        every = {**TASKS, CUSTOM.name: CUSTOM}
        shown = {args.task: _show(task(args.task))} if args.task else {n: _show(t) for n, t in every.items()}
        print(json.dumps({"tasks": shown, "cards": {n: dataclasses.asdict(c) for n, c in CARDS.items()}}, indent=1))
    else:
        recipe = task(args.task)
        print({"train-flags": lambda: " ".join(recipe.train.train_flags()),
               "beam-flags": lambda: " ".join(recipe.headline.beam_flags()),
               "length-penalties": lambda: " ".join(str(d.length_penalty) for d in recipe.decodes),
               "data-dir": lambda: recipe.data_dir, "raw-file": lambda: recipe.raw_file}[args.what]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
