"""The training flags, checked once: ``build_parser`` (the CLI), ``TrainConfig`` (every flag, every check,
every value derived from them) and ``RunPlan`` (what the flags and the training data decide together).

The library modules (``optim``, ``sampling``, ``step``, ``cudagraph``, ``gpt2_lora.model``) check their own
arguments and raise ``ValueError`` in their own parameter names. This module is the one place that
knows which flag each argument comes from: it checks the flags before any work (one-line ``UserError``
naming the flag), and when it builds a library object it reports that object's ``ValueError`` in flag
names too (``_in_flag_names``).

The speed flags' rules live here too: ``--precision``/``--fp16``, ``--residual``, ``--packed_attention``,
``--compile``/``--cuda_graphs`` (which stepper runs: ``graphed``, ``compiled`` or ``eager``), and the
padding they imply (``pad_multiple``, ``select_multiple``, ``packed_shape``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from ..cli import Parser, add_device_flags, add_launcher_flags, add_model_flags, default_work_dir
from ..errors import UserError
from ..fileio import file_sha256
from ..model import FLASH_VARLEN, GPT2Config
from .distributed import World
from .optim import SCHEDULERS, AdamW, Schedule, grouped_parameters
from .sampling import BATCHING_MODES, BatchPlan, PackedShape, packed_shape
from .step import PACKED_ATTENTION, PRECISIONS, RESIDUALS

STEPPERS = ("graphed", "compiled", "eager")
FULL_FINETUNE_SAVE_LIMIT = 2  # --lora_dim 0 checkpoints are the whole model: keep only the newest two
EVAL_PAD = 8  # validation batches: lengths and masked entries rounded to 8 (any grouping gives the same loss)

# The settings that make a resumed run a different run (besides these flags: the training file's
# contents, the resolved --pack_len and the number of processes; see TrainConfig.resume_key).
RESUME_FLAGS = ("train_data", "model_card", "init_checkpoint", "lora_dim", "lora_alpha", "lora_init", "seq_len",
                "obj", "train_batch_size", "grad_acc", "random_seed", "batching", "max_tokens")
_PATH_SETTINGS = ("train_data", "model_card", "init_checkpoint")


# ------------------------------------------------------------------------------------------------ flags
def build_parser() -> argparse.ArgumentParser:
    """``gpt2_lora.train``'s flags: upstream ``gpt2_ft.py``'s (names, defaults, meanings) plus ours."""
    p = Parser(prog="gpt2-lora-train", description="Fine-tune GPT-2 with LoRA: ``python -m gpt2_lora.train`` "
               "(console script ``gpt2-lora-train``).")
    _add_upstream_flags(p, p.add_argument_group("upstream gpt2_ft.py flags (same names, defaults and meanings)"))
    add_device_flags(p, precisions=PRECISIONS, precision_default=None,
                     precision_help="fp32 (upstream), bf16 or fp16 autocast [fp32]")
    _add_speed_flags(p.add_argument_group("throughput (gpt2-lora additions)"))
    _add_run_flags(p.add_argument_group("initialisation, run folder and checkpoints (gpt2-lora additions)"))
    return p


def _add_upstream_flags(p: argparse.ArgumentParser, g) -> None:
    a = g.add_argument
    a("--train_data", required=True, help="encoded training jsonl")
    a("--valid_data", required=True, help="encoded validation jsonl")
    a("--train_batch_size", type=int, default=8, help="training batch size per process")
    a("--valid_batch_size", type=int, default=4, help="validation batch size (defines the reported loss)")
    a("--grad_acc", type=int, default=1, help="gradient accumulation steps")
    a("--clip", type=float, default=0.0, help="gradient norm clipping (0 = off)")
    a("--seq_len", type=int, default=512, help="examples are cut to this many tokens")
    add_model_flags(p, model_card="gpt2.md", lora_dim=0, lora_alpha=128, base_checkpoint=False, group=g,
                    init_help="pretrained GPT-2 weights (HF .bin/.safetensors or upstream)")
    _set_help(g, "--lora_dim", "LoRA rank r (0 = full fine-tuning)")
    a("--fp16", action="store_true", help="same as --precision fp16")
    a("--log_interval", type=int, default=100, help="log every N optimizer steps")
    a("--eval_interval", type=int, default=2000, help="validate every N optimizer steps (and each epoch)")
    a("--save_interval", type=int, default=500, help="checkpoint every N optimizer steps (and each epoch)")
    a("--work_dir", default=default_work_dir(), help="output folder")
    a("--obj", default="clm", choices=["jlm", "clm"], help="clm: loss on the completion; jlm: on everything")
    a("--lora_dropout", type=float, default=0.0, help="dropout on the LoRA input")
    a("--label_smooth", type=float, default=0.0, help="label smoothing epsilon")
    a("--random_seed", type=int, default=10, help="seed for initialisation, data order and dropout")
    a("--lr", type=float, default=0.00001, help="peak learning rate")
    a("--weight_decay", type=float, default=0.01, help="decoupled weight decay (applied after the update)")
    a("--correct_bias", action="store_true", help="Adam bias correction")
    a("--adam_epislon", type=float, default=1e-6, help="Adam epsilon (upstream's spelling)")
    a("--no_decay_bias", action="store_true", help="no weight decay on biases")
    a("--adam_beta1", type=float, default=0.9)
    a("--adam_beta2", type=float, default=0.98)
    a("--scheduler", default="linear", choices=SCHEDULERS, help="lr schedule (inv_sqrt, dev_perf: constant)")
    a("--max_step", type=int, default=None, help="optimizer steps (default: from --max_epoch)")
    a("--max_epoch", type=int, default=None, help="epochs")
    a("--warmup_step", type=int, default=0, help="linear warmup steps")
    a("--i_steps", default="0", help="cycle scheduler: comma-separated steps")
    a("--i_lrs", default="0.00025", help="cycle scheduler: comma-separated learning rates")
    add_launcher_flags(p, group=g)
    for name, kind, default in (("--roll_interval", int, -1), ("--roll_lr", float, 0.00001),
                                ("--roll_step", int, 100), ("--eval_epoch", int, 1)):
        a(name, type=kind, default=default, help="accepted for compatibility; unused upstream too")


def _add_speed_flags(g) -> None:
    b = g.add_argument
    b("--residual", choices=RESIDUALS, default="fp32", help="dtype of the residual stream; bf16 (with "
      "--precision bf16) halves the memory traffic of LayerNorm/residual kernels but rounds the stream [fp32]")
    b("--packed_attention", choices=PACKED_ATTENTION, default="mask", help="with --batching packed: a dense "
      "block-diagonal mask per row, or varlen: the variable-length flash kernel (CUDA, bf16/fp16; slower on "
      "short examples such as E2E's, see BENCHMARKS.md) [mask]")
    b("--compile", nargs="?", const="default", default=None, metavar="MODE",
      help="torch.compile the training step (MODE: default, reduce-overhead, max-autotune, ...)")
    b("--batching", choices=BATCHING_MODES, default="dynamic",
      help="padded: to --seq_len like upstream; dynamic: to the longest in the batch; bucketed: by length; "
      "packed: several examples per row, fixed batch shape (throughput mode, needs --max_tokens)")
    b("--max_tokens", type=int, default=None, help="with --batching bucketed or packed: token budget per batch "
      "instead of --train_batch_size examples")
    b("--pack_len", type=int, default=None, help="with --batching packed: row length [longest training "
      "example, rounded up to 64]")
    b("--cuda_graphs", action="store_true",
      help="replay each step (forward, backward, AdamW) as a CUDA graph: one GPU, --grad_acc 1, fp32/bf16")
    b("--pad_multiple", type=int, default=None,
      help="round padded lengths up to this [8; 32 with --compile reduce-overhead]")
    b("--eval_max_tokens", type=int, default=16384, help="tokens per forward pass during validation")


def _add_run_flags(g) -> None:
    b = g.add_argument
    b("--lora_init", choices=("default", "gaussian"), default="default", help="LoRA A/B initialisation")
    b("--resume", action="store_true", help="continue from --work_dir/resume.pt")
    b("--overwrite", action="store_true", help="start afresh in a --work_dir that holds a run: its checkpoints, "
      "resume.pt, logs and merged/ are deleted (once every flag and input has been checked)")
    b("--save_format", choices=("torch", "safetensors"), default="torch", help="checkpoint file format")
    b("--save_merged", action="store_true", help="at the end also write the merged full model to work_dir/merged")
    b("--stop_at_step", type=int, default=None, help="checkpoint and exit after this optimizer step "
      "(continue later with --resume; the schedule still follows --max_step)")
    b("--save_total_limit", type=int, default=None, metavar="N", help="keep only the newest N step checkpoints "
      "(model.<step>.*), besides model.best.* and the one resume.pt continues from; 0 = keep all [all with "
      f"LoRA; {FULL_FINETUNE_SAVE_LIMIT} with --lora_dim 0, whose checkpoints are the whole model]")
    b("--keep_epoch_checkpoints", action="store_true", help="keep every epoch-end checkpoint whatever "
      "--save_total_limit says (log.jsonl's epoch_end records name them), e.g. to score each epoch")


def _set_help(group, flag: str, text: str) -> None:
    """Give a shared flag (``cli``) the help text that its meaning has in this CLI."""
    next(a for a in group._group_actions if flag in a.option_strings).help = text


# ------------------------------------------------------------------------------------------ the config
@dataclass(frozen=True)
class TrainConfig:
    """Every training setting, checked, with the values derived from the flags (``from_args``)."""

    # data
    train_data: str
    valid_data: str
    seq_len: int = 512
    obj: str = "clm"
    # model
    model_card: str = "gpt2.md"
    init_checkpoint: str | None = None
    lora_dim: int = 0
    lora_alpha: int = 128
    lora_dropout: float = 0.0
    lora_init: str = "default"
    # batches
    train_batch_size: int = 8
    valid_batch_size: int = 4
    grad_acc: int = 1
    batching: str = "dynamic"
    max_tokens: int | None = None
    pack_len: int | None = None  # as given; RunPlan.pack_len is the one used
    pad_multiple: int = 8        # resolved: 32 when steps replay CUDA graphs
    eval_max_tokens: int = 16384
    # optimisation
    lr: float = 0.00001
    weight_decay: float = 0.01
    correct_bias: bool = False
    adam_epislon: float = 1e-6
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    no_decay_bias: bool = False
    clip: float = 0.0
    label_smooth: float = 0.0
    scheduler: str = "linear"
    max_step: int | None = None  # as given; RunPlan.max_step is the one used
    max_epoch: int | None = None
    warmup_step: int = 0
    i_steps: tuple[int, ...] = (0,)
    i_lrs: tuple[float, ...] = (0.00025,)
    random_seed: int = 10
    # speed
    precision: str = "fp32"      # resolved (--fp16 is --precision fp16)
    residual: str = "fp32"
    packed_attention: str = "mask"
    compile: str | None = None
    cuda_graphs: bool = False
    stepper: str = "eager"       # graphed | compiled | eager (see _stepper)
    graphs_unavailable: str | None = None  # why --cuda_graphs cannot run here (the eager step runs)
    # the run folder
    work_dir: str = "gpt2_model"
    log_interval: int = 100
    eval_interval: int = 2000
    save_interval: int = 500
    resume: bool = False
    overwrite: bool = False
    stop_at_step: int | None = None
    save_format: str = "torch"
    save_merged: bool = False
    save_total_limit: int | None = None  # resolved: None keeps every step checkpoint
    keep_epoch_checkpoints: bool = False
    # where it runs
    world: World = dataclasses.field(default_factory=World)

    # ---------------------------------------------------------------------------------- building
    @classmethod
    def from_args(cls, args: argparse.Namespace, world: World | None = None) -> "TrainConfig":
        """Check the parsed flags (one-line UserError naming the flag) and derive what they imply;
        ``world`` defaults to torchrun's environment and ``--device``."""
        _check_flags(args)
        world = World.from_env(args.device, args.local_rank) if world is None else world
        precision = _precision(args)
        _check_device(args, precision, world)
        i_steps, i_lrs = _schedule_points(args)
        stepper, unavailable = _stepper(args, precision, world)
        limit = args.save_total_limit
        if limit is None:
            limit = FULL_FINETUNE_SAVE_LIMIT if args.lora_dim == 0 else 0
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
        values.update(precision=precision, i_steps=i_steps, i_lrs=i_lrs, stepper=stepper,
                      graphs_unavailable=unavailable,
                      pad_multiple=args.pad_multiple or (32 if _replays_graphs(args.compile, args.cuda_graphs) else 8),
                      save_total_limit=limit or None, world=world)
        return cls(**values)

    @classmethod
    def from_flags(cls, argv: Sequence[str], world: World | None = None) -> "TrainConfig":
        """``from_args`` of a command line (``gpt2_lora.train``'s flags)."""
        return cls.from_args(build_parser().parse_args(list(argv)), world)

    # ---------------------------------------------------------------------------- derived values
    @property
    def graphs(self) -> bool:
        """The steps replay CUDA graphs (``--cuda_graphs``, or ``--compile reduce-overhead``): batches
        are padded to few shapes."""
        return _replays_graphs(self.compile, self.cuda_graphs)

    @property
    def packed(self) -> bool:
        return self.batching == "packed"

    @property
    def pad_to(self) -> int | None:
        """``--batching padded`` pads every batch to ``--seq_len``, as upstream."""
        return self.seq_len if self.batching == "padded" else None

    @property
    def select_multiple(self) -> int:
        """Masked entries of an unpacked batch are padded to a multiple of this (packed: PackedShape's)."""
        return 64 if self.graphs else 8

    @property
    def compile_mode(self) -> str | None:
        return None if self.compile in (None, "default") else self.compile

    @property
    def compile_dynamic(self) -> bool | None:
        """Packed batches have one shape: specialised code (18% faster on an H100) with only the count of
        masked entries dynamic (``dynamic_entries``); other batching compiles for dynamic shapes."""
        return None if self.packed else True

    @property
    def dynamic_entries(self) -> bool:
        return self.packed and self.stepper == "compiled"

    @property
    def joint_lm(self) -> bool:
        return self.obj == "jlm"

    def max_step_for(self, global_batches_per_epoch: int) -> int:
        """The optimizer steps of the run: --max_step, the cycle schedule's last step (upstream resets it),
        or --max_epoch epochs of all ranks' batches, --grad_acc micro-batches per step."""
        if self.scheduler == "cycle":
            return self.i_steps[-1]
        if self.max_step is not None:
            return self.max_step
        return -(-(self.max_epoch * global_batches_per_epoch) // (self.world.size * self.grad_acc))

    def inputs(self) -> dict[str, str | None]:
        """The files the run reads, by flag."""
        return {"--train_data": self.train_data, "--valid_data": self.valid_data,
                "--init_checkpoint": self.init_checkpoint, "--model_card": self.model_card}

    # ---------------------------------------------------------------- library objects, in flag names
    def model_config(self) -> GPT2Config:
        config = GPT2Config.resolve(self.model_card, lora_attn_dim=self.lora_dim, lora_attn_alpha=self.lora_alpha,
                                    lora_dropout=self.lora_dropout, lora_init=self.lora_init)
        if self.seq_len > config.n_positions:
            raise UserError(f"--seq_len {self.seq_len} exceeds the model's n_positions={config.n_positions}")
        return config

    def packed_shape(self, lengths: np.ndarray) -> PackedShape | None:
        """The fixed batch shape of ``--batching packed`` for these training lengths (None otherwise)."""
        if not self.packed:
            return None
        with _in_flag_names(max_tokens="--max_tokens", pack_len="--pack_len", seq_len="--seq_len"):
            return packed_shape(lengths, self.max_tokens, self.seq_len, self.pack_len,
                                dynamic_entries=self.stepper == "compiled")

    def batch_plan(self, lengths: np.ndarray, packed: PackedShape | None) -> BatchPlan:
        """This rank's training batches, epoch by epoch."""
        with _in_flag_names(mode="--batching", batch_size="--train_batch_size", max_tokens="--max_tokens",
                            row_len="--pack_len"):
            return BatchPlan(lengths, self.train_batch_size, self.random_seed, self.batching, self.world.size,
                             self.world.rank, self.max_tokens, self.pad_multiple, packed=packed)

    def optimizer(self, model: torch.nn.Module) -> AdamW:
        with _in_flag_names(lr="--lr", eps="--adam_epislon", **{"betas[0]": "--adam_beta1",
                                                                 "betas[1]": "--adam_beta2"}):
            return AdamW(grouped_parameters(model, self.no_decay_bias), lr=self.lr,
                         betas=(self.adam_beta1, self.adam_beta2), eps=self.adam_epislon,
                         weight_decay=self.weight_decay, correct_bias=self.correct_bias)

    def schedule(self, max_step: int) -> Schedule:
        with _in_flag_names(name="--scheduler", warmup_step="--warmup_step", max_step="--max_step",
                            i_steps="--i_steps", i_lrs="--i_lrs"):
            return Schedule(self.scheduler, self.lr, self.warmup_step, max_step, self.i_steps, self.i_lrs)

    # -------------------------------------------------------------------------------------- resume
    def resume_key(self, plan: "RunPlan") -> dict[str, Any]:
        """What ``--resume`` requires to be unchanged: the flags of RESUME_FLAGS, the training file's
        contents, the resolved --pack_len and the number of processes."""
        key = {name: getattr(self, name) for name in RESUME_FLAGS}
        key.update(train_data_sha256=plan.train_data_sha256, pack_len=plan.pack_len, world_size=self.world.size)
        return key

    def resume_changes(self, saved: Mapping[str, Any], plan: "RunPlan") -> list[str]:
        """How ``saved`` (the settings a resume file was written with) differs from this run's key;
        settings the file does not record are not compared, and paths compare as the files they name."""
        changes = []
        for name, value in self.resume_key(plan).items():
            if name in saved and _comparable(name, saved[name]) != _comparable(name, value):
                changes.append("the --train_data file's contents" if name == "train_data_sha256"
                               else f"--{name} {saved[name]!r} -> {value!r}")
        return changes

    def record(self, plan: "RunPlan") -> dict[str, Any]:
        """The run's settings as written to args.json (and into resume.pt)."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "world"}
        record.update(self.resume_key(plan), device=str(self.world.device), max_step_resolved=plan.max_step)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}


@dataclass(frozen=True)
class RunPlan:
    """What the flags and the training data decide together, fixed once the data is read."""

    max_step: int
    packed: PackedShape | None = None
    train_data_sha256: str | None = None

    @property
    def pack_len(self) -> int | None:
        return self.packed.pack_len if self.packed else None

    @classmethod
    def build(cls, config: TrainConfig, batches: BatchPlan) -> "RunPlan":
        """From this rank's batch plan (``config.batch_plan``): the run's length in optimizer steps."""
        if not batches.epoch(1):
            raise UserError(f"--train_data {config.train_data} gives this process no batch of an epoch "
                            f"({batches.num_examples} examples, {config.world.size} processes); use more data "
                            f"or a smaller --train_batch_size / --max_tokens")
        return cls(max_step=config.max_step_for(batches.global_batches_per_epoch()), packed=batches.packed,
                   train_data_sha256=file_sha256(config.train_data))

    def select_multiple(self, config: TrainConfig) -> int:
        return self.packed.select_multiple if self.packed else config.select_multiple


# -------------------------------------------------------------------------------------------- checks
def _check_flags(args) -> None:
    for name in ("train_batch_size", "valid_batch_size", "grad_acc", "log_interval", "eval_interval",
                 "save_interval", "eval_max_tokens"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in ("max_step", "max_epoch", "max_tokens", "pad_multiple", "stop_at_step", "pack_len"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name} must be at least 1, got {value}")
    if args.seq_len < 2:
        raise UserError(f"--seq_len must be at least 2, got {args.seq_len}")
    if args.lora_dim < 0:
        raise UserError(f"--lora_dim must be >= 0, got {args.lora_dim}")
    if args.lora_dim > 0 and args.lora_alpha <= 0:
        raise UserError(f"--lora_alpha must be > 0 with --lora_dim {args.lora_dim}, got {args.lora_alpha}")
    _check_numbers(args)
    if not str(args.work_dir).strip():
        raise UserError("--work_dir is empty")
    if args.resume and args.overwrite:
        raise UserError("--resume continues the run in --work_dir and --overwrite discards it; give one")
    if args.save_total_limit is not None and args.save_total_limit < 0:
        raise UserError(f"--save_total_limit must be >= 0 (0 = keep all), got {args.save_total_limit}")
    if args.max_step is None and args.max_epoch is None and args.scheduler != "cycle":
        raise UserError("give --max_epoch or --max_step (how long to train)")
    if args.cuda_graphs and args.compile:
        raise UserError("--cuda_graphs and --compile are alternatives; give one")
    if args.batching == "packed" and args.max_tokens is None:
        raise UserError("--batching packed needs --max_tokens")
    if args.max_tokens is not None and args.batching not in ("bucketed", "packed"):
        raise UserError("--max_tokens needs --batching bucketed or packed")


def _check_numbers(args) -> None:
    for name, low, strict, meaning in (("lr", 0.0, False, ""), ("adam_epislon", 0.0, True, ""),
                                       ("weight_decay", 0.0, False, ""), ("clip", 0.0, False, " (0 = no clipping)")):
        value = getattr(args, name)
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise UserError(f"--{name} must be a finite number {'>' if strict else '>='} {low:g}{meaning}, "
                            f"got {value}")
    for name in ("lora_dropout", "label_smooth", "adam_beta1", "adam_beta2"):
        if not 0.0 <= getattr(args, name) < 1.0:
            raise UserError(f"--{name} must be in [0, 1), got {getattr(args, name)}")
    if args.warmup_step < 0:
        raise UserError(f"--warmup_step must be >= 0, got {args.warmup_step}")


def _precision(args) -> str:
    if args.fp16 and args.precision not in (None, "fp16"):
        raise UserError(f"--fp16 contradicts --precision {args.precision}")
    return "fp16" if args.fp16 else args.precision or "fp32"


def _check_device(args, precision: str, world: World) -> None:
    """The flags that need a particular device or precision."""
    if precision == "fp16" and world.device.type != "cuda":
        raise UserError("--precision fp16 (or --fp16) needs a CUDA device; use bf16 or fp32 on the CPU")
    if args.residual == "bf16" and precision != "bf16":
        raise UserError(f"--residual bf16 needs --precision bf16 (got --precision {precision})")
    if args.packed_attention == "varlen":
        if args.batching != "packed":
            raise UserError("--packed_attention varlen needs --batching packed")
        if world.device.type != "cuda" or precision == "fp32" or FLASH_VARLEN is None:
            raise UserError("--packed_attention varlen needs a CUDA device, --precision bf16 or fp16 and a torch "
                            "with flash attention; use --packed_attention mask")


def _schedule_points(args) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """--i_steps / --i_lrs as numbers (the cycle schedule's corners)."""
    try:
        steps = tuple(int(x) for x in str(args.i_steps).split(","))
        lrs = tuple(float(x) for x in str(args.i_lrs).split(","))
    except ValueError:
        raise UserError("--i_steps / --i_lrs must be comma-separated numbers") from None
    if args.scheduler == "cycle":
        if steps[-1] < 1:
            raise UserError(f"--scheduler cycle trains for --i_steps' last step, got {steps[-1]}; give --i_steps")
        if len(steps) != len(lrs):
            raise UserError(f"--i_steps and --i_lrs must list the same number of values, got {len(steps)} "
                            f"and {len(lrs)}")
    return steps, lrs


def _replays_graphs(compile_mode: str | None, cuda_graphs: bool) -> bool:
    """--cuda_graphs, or --compile reduce-overhead (torch's CUDA graphs): few batch shapes wanted."""
    return (bool(compile_mode) and "reduce-overhead" in compile_mode) or cuda_graphs


def _stepper(args, precision: str, world: World) -> tuple[str, str | None]:
    """Which stepper runs the steps, and why --cuda_graphs cannot run here (else None)."""
    if args.compile:
        return "compiled", None
    if not args.cuda_graphs:
        return "eager", None
    if world.device.type != "cuda":
        reason = "CUDA graphs need a CUDA device"
    elif world.size > 1:
        reason = "CUDA graphs run in a single process (multi-GPU training uses the eager step)"
    elif args.grad_acc != 1:
        reason = "CUDA graphs need --grad_acc 1"
    elif precision == "fp16":
        reason = "CUDA graphs do not support fp16 loss scaling (use bf16)"
    else:
        return "graphed", None
    return "eager", reason


def _comparable(name: str, value):
    """Paths compare as the files they name (a relative and an absolute path to one file are equal)."""
    if name in _PATH_SETTINGS and isinstance(value, str) and Path(value).exists():
        return str(Path(value).resolve())
    return value


@contextlib.contextmanager
def _in_flag_names(**flags: str) -> Iterator[None]:
    """A library object's ValueError, with its parameter names (the keys) replaced by the flags."""
    try:
        yield
    except ValueError as err:
        names = "|".join(re.escape(k) for k in sorted(flags, key=len, reverse=True))
        message = re.sub(rf"(?<![\w-])({names})(?![\w\[])", lambda m: flags[m.group(1)], str(err))
        raise UserError(message) from None
