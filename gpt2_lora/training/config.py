"""The training flags (``flags.build_parser``), checked once: ``TrainConfig`` (every flag, every check, every
value derived from them) and ``RunPlan`` (what the flags and the training data decide together).

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

from ..errors import UserError
from ..fileio import file_sha256
from ..model import FLASH_VARLEN, GPT2Config
from .distributed import World
from .flags import FULL_FINETUNE_SAVE_LIMIT, build_parser
from .optim import AdamW, Schedule, grouped_parameters
from .sampling import BatchPlan, PackedShape, packed_shape

STEPPERS = ("graphed", "compiled", "eager")
EVAL_PAD = 8  # validation batches: lengths and masked entries rounded to 8 (any grouping gives the same loss)

# The settings that make a resumed run a different run (besides these flags: the training file's
# contents, the resolved --pack_len and the number of processes; see TrainConfig.resume_key).
RESUME_FLAGS = ("train_data", "model_card", "init_checkpoint", "lora_dim", "lora_alpha", "lora_init", "seq_len",
                "obj", "train_batch_size", "grad_acc", "random_seed", "batching", "padding_free", "max_tokens")
_PATH_SETTINGS = ("train_data", "model_card", "init_checkpoint")


# ------------------------------------------------------------------------------------------ the config
@dataclass(frozen=True)
class TrainConfig:
    """Every training setting, with the values derived from the flags. ``from_args`` (or ``from_flags``) is
    the checked way to build one; the fields keep the flags' names."""

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
    padding_free: bool = False
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

    def __post_init__(self):
        if self.stepper not in STEPPERS:
            raise ValueError(f"stepper must be one of {', '.join(STEPPERS)}, got {self.stepper!r}")

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
    def attention(self) -> str:
        """How rows holding several examples attend (``--batching packed``, ``--padding_free``): ``varlen``
        (the variable-length flash kernel) when asked for, or for --padding_free where it can run; else
        ``mask`` (a dense block-diagonal mask)."""
        if self.packed_attention == "varlen" or (self.padding_free and _varlen_runs(self.precision, self.world)):
            return "varlen"
        return "mask"

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
    if args.cuda_graphs and args.compile:  # Inductor's code inside our graph: see BENCHMARKS.md (its GPU test failed)
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
    if args.padding_free and args.batching not in ("dynamic", "bucketed"):
        raise UserError(f"--padding_free needs --batching dynamic or bucketed (got --batching {args.batching}: "
                        f"{'every row padded to --seq_len' if args.batching == 'padded' else 'rows already packed'})")
    if args.packed_attention == "varlen":
        if args.batching != "packed" and not args.padding_free:
            raise UserError("--packed_attention varlen needs --batching packed or --padding_free")
        if not _varlen_runs(precision, world):
            raise UserError("--packed_attention varlen needs a CUDA device, --precision bf16 or fp16 and a torch "
                            "with flash attention; use --packed_attention mask")


def _varlen_runs(precision: str, world: World) -> bool:
    """Whether the variable-length flash kernel can run: CUDA, bf16/fp16, a torch that has it."""
    return world.device.type == "cuda" and precision != "fp32" and FLASH_VARLEN is not None


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
