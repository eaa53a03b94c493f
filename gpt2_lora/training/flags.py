"""The command line of ``gpt2_lora.train``: upstream ``gpt2_ft.py``'s flags (names, defaults, meanings) and
ours. ``config.TrainConfig.from_args`` checks what they hold; the shared groups (model, device, launcher)
come from ``gpt2_lora.cli``."""

from __future__ import annotations

import argparse

from ..cli import Parser, add_device_flags, add_launcher_flags, add_model_flags, default_work_dir
from .optim import SCHEDULERS
from .sampling import BATCHING_MODES
from .step import PACKED_ATTENTION, PRECISIONS, RESIDUALS

FULL_FINETUNE_SAVE_LIMIT = 2  # --lora_dim 0 checkpoints are the whole model: keep only the newest two


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
    b("--packed_attention", choices=PACKED_ATTENTION, default="mask", help="with --batching packed (or "
      "--padding_free, where varlen is the default wherever it runs): a dense "
      "block-diagonal mask per row, or varlen: the variable-length flash kernel (CUDA, bf16/fp16; slower on "
      "short examples such as E2E's, see BENCHMARKS.md) [mask]")
    b("--compile", nargs="?", const="default", default=None, metavar="MODE",
      help="torch.compile the training step (MODE: default, reduce-overhead, max-autotune, ...)")
    b("--batching", choices=BATCHING_MODES, default="dynamic",
      help="padded: to --seq_len like upstream; dynamic: to the longest in the batch; bucketed: by length; "
      "packed: several examples per row, fixed batch shape (throughput mode, needs --max_tokens)")
    b("--padding_free", action="store_true", help="lay each batch's examples end to end in one row: no padding "
      "tokens, each example attending to itself only (same loss as padded rows; the variable-length flash "
      "kernel on CUDA with bf16/fp16, else a block-diagonal mask); with --batching dynamic or bucketed")
    b("--max_tokens", type=int, default=None, help="with --batching bucketed or packed: token budget per batch "
      "instead of --train_batch_size examples")
    b("--pack_len", type=int, default=None, help="with --batching packed: row length [longest training "
      "example, rounded up to 64]")
    b("--cuda_graphs", action="store_true",
      help="replay each step (forward, backward, AdamW) as a CUDA graph: one GPU, --grad_acc 1, fp32/bf16")
    b("--pad_multiple", type=int, default=None,
      help="round padded lengths up to this [8; 32 when steps replay CUDA graphs]")
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
