"""Read and write model checkpoints: HF GPT-2 (.bin / .safetensors / a save_pretrained directory),
upstream LoRA (``{'model_state_dict': ...}``) and LoRA-only files. Every write is atomic.

Training-state (optimizer, schedule, resume) files belong to ``gpt2_lora.train``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Mapping

import torch

from . import lora
from .errors import UserError
from .fileio import atomic_write

# What HF save_pretrained writes, in the order we prefer them.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A weights file, or the weights file inside an HF save_pretrained directory."""
    path = Path(path)
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise UserError(f"{path}: directory holds none of {', '.join(WEIGHT_FILES)}")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return path


def hf_config_file(path: str | os.PathLike) -> Path | None:
    """The ``config.json`` that goes with a checkpoint (in the directory, or beside the file)."""
    path = Path(path)
    config = (path if path.is_dir() else path.parent) / "config.json"
    return config if config.is_file() else None


def load_checkpoint_file(path: str | os.PathLike, trusted: bool = False) -> dict:
    """Load a checkpoint onto the CPU as a dict (.safetensors, or torch .bin/.pt/.pth/...).

    Torch files are read with ``weights_only=True``; files that need arbitrary unpickling are
    refused unless ``trusted`` (unpickling runs code from the file).
    """
    path = resolve_checkpoint(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise UserError(f"{path}: not a readable safetensors file ({_one_line(err)})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as err:
        if not trusted and "Unsupported global" in str(err):  # a valid pickle of non-tensor objects
            raise UserError(f"{path}: holds objects other than tensors; load it with trusted=True only if you "
                            f"trust its source") from None
        raise UserError(f"{path}: not a readable torch checkpoint ({_one_line(err)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ModuleNotFoundError) as err:
        raise UserError(f"{path}: not a readable torch checkpoint ({_one_line(err)})") from None
    if not isinstance(state, Mapping):
        raise UserError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return dict(state)


def _one_line(err: BaseException) -> str:
    text = str(err)
    if "WeightsUnpickler error:" in text:  # skip torch's long weights_only preamble
        text = text.split("WeightsUnpickler error:", 1)[1]
    text = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return text[0][:200] if text else type(err).__name__


def save_state_dict(state: Mapping, path: str | os.PathLike) -> Path:
    """Write ``state`` atomically: safetensors when the name ends in .safetensors (a flat dict of
    tensors), else ``torch.save`` (any dict, e.g. upstream's ``{'model_state_dict': ...}``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save

        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError("safetensors holds a flat dict of tensors only; use a .pt name for nested state")
        flat, seen = {}, set()
        for key, value in state.items():
            value = value.detach().cpu().contiguous()
            if value.untyped_storage().data_ptr() in seen:  # safetensors refuses shared storage (tied weights)
                value = value.clone()
            seen.add(value.untyped_storage().data_ptr())
            flat[key] = value
        data = save(flat)
    else:
        data = None  # torch.save streams into the file: no second copy in memory
    with atomic_write(path, "wb") as handle:
        if data is None:
            torch.save(dict(state), handle)
        else:
            handle.write(data)
    return path


def lora_only_state_dict(model: torch.nn.Module, bias: str = "none") -> dict[str, torch.Tensor]:
    """The LoRA weights of ``model`` (plus biases per ``bias``, as ``lora.lora_state_dict``), on the CPU."""
    return {k: v.detach().cpu() for k, v in lora.lora_state_dict(model, bias=bias).items()}


def load_into(model, *paths: str | os.PathLike):
    """Load checkpoint files into a GPT2LMModel in order (e.g. base, then LoRA-only); the last report."""
    report = None
    for path in paths:
        try:
            report = model.load_weight(load_checkpoint_file(path))
        except UserError as err:
            message = str(err)
            raise UserError(message if str(path) in message else f"{path}: {message}") from None
    return report
