"""What the command-line tools share: one parser class and the flag groups that several CLIs take.

Each group is declared once here, so ``--model_card`` or ``--device`` mean the same in train, beam,
generate and export. A CLI picks the defaults that its upstream script had (upstream's train and beam
differ), and everything else about the flag is shared.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

from .errors import UserError


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each help ends with its flag's default, except where there is none to state (None, or a switch's False):
    "(default: None)" beside a help that says what happens without the flag only confuses."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one ``error: ...`` line (through UserError, exit status 2)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UserError(f"{message} (see --help)")


def add_model_flags(parser: argparse.ArgumentParser, *, model_card: str = "gpt2.md", lora_dim: int = 0,
                    lora_alpha: int = 128, init_help: str = "weights to start from (HF file or folder, upstream "
                    "or our checkpoint)", base_checkpoint: bool = True, group=None):
    """``--model_card --init_checkpoint [--base_checkpoint] --lora_dim --lora_alpha``."""
    from .model import CARDS  # here, so that CLIs without model flags (report, the scorers) do not load torch

    g = group if group is not None else parser.add_argument_group("model and weights")
    g.add_argument("--model_card", default=model_card,
                   help=f"one of {', '.join(CARDS)}, or a path to an HF config.json")
    g.add_argument("--init_checkpoint", default=None, help=init_help)
    if base_checkpoint:
        g.add_argument("--base_checkpoint", default=None,
                       help="pretrained GPT-2 loaded before --init_checkpoint (for LoRA-only checkpoints)")
    g.add_argument("--lora_dim", type=int, default=lora_dim, help="LoRA rank r (0 = no LoRA)")
    g.add_argument("--lora_alpha", type=int, default=lora_alpha, help="LoRA alpha (scaling = alpha / r)")
    return g


def add_device_flags(parser: argparse.ArgumentParser, *, precisions: Sequence[str], precision_default: str | None,
                     precision_help: str, group=None):
    """``--device`` (see ``devices.resolve_device``) and ``--precision``."""
    g = group if group is not None else parser.add_argument_group("device and precision")
    g.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N or N (a GPU index) [this process's GPU if CUDA is present, else cpu]")
    g.add_argument("--precision", choices=tuple(precisions), default=precision_default, help=precision_help)
    return g


def add_launcher_flags(parser: argparse.ArgumentParser, group=None):
    """Upstream's launcher flags (torch.distributed.launch / gpu.py): accepted, read from the environment."""
    g = group if group is not None else parser
    g.add_argument("--platform", default="k8s", help="ignored: the launcher (torchrun) is read from the environment")
    g.add_argument("--local_rank", "--local-rank", type=int, default=0,
                   help="set by torch.distributed.launch; LOCAL_RANK wins")
    g.add_argument("--rank", type=int, default=0, help="ignored (RANK from the environment)")
    g.add_argument("--world_size", type=int, default=0, help="ignored (WORLD_SIZE from the environment)")
    return g


def default_work_dir() -> str:
    """Upstream's default output folder: $PT_OUTPUT_DIR, else gpt2_model."""
    return os.getenv("PT_OUTPUT_DIR", "gpt2_model")
