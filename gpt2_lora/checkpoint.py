"""Read and write model checkpoints: HF GPT-2 (.bin / .safetensors / a save_pretrained directory),
upstream LoRA (``{'model_state_dict': ...}``) and LoRA-only files. Every write is atomic.

Training-state (optimizer, schedule, resume) files belong to ``gpt2_lora.training.rundir``.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from . import lora
from .errors import UserError
from .fileio import atomic_write, file_sha256

# What HF save_pretrained writes, in the order we prefer them.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
UPSTREAM_PREFIX = "module."  # upstream saves from a DDP-wrapped model
# Where a trained checkpoint describes itself: a top-level key of a torch file (upstream readers look
# only at 'model_state_dict'), or the header metadata of a safetensors file (a JSON string).
METADATA_KEY = "gpt2_lora_adapter"
METADATA_FORMAT = 1


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
    state = dict(state)
    state.pop(METADATA_KEY, None)  # a description, not weights (read_metadata reads it)
    return state


def _one_line(err: BaseException) -> str:
    text = str(err)
    if "WeightsUnpickler error:" in text:  # skip torch's long weights_only preamble
        text = text.split("WeightsUnpickler error:", 1)[1]
    text = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not text:
        return type(err).__name__
    return text[0].split(". ", 1)[0][:200]  # the first sentence: torch follows it with advice about its internals


def save_state_dict(state: Mapping, path: str | os.PathLike, header: Mapping[str, str] | None = None) -> Path:
    """Write ``state`` atomically: safetensors when the name ends in .safetensors (a flat dict of
    tensors, ``header`` its string metadata), else ``torch.save`` (any dict, e.g. upstream's
    ``{'model_state_dict': ...}``)."""
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
        data = save(flat, metadata=None if header is None else dict(header))
    else:
        data = None  # torch.save streams into the file: no second copy in memory
    with atomic_write(path, "wb") as handle:
        if data is None:
            torch.save(dict(state), handle)
        else:
            handle.write(data)
    return path


def save_weights(weights: Mapping[str, torch.Tensor], path: str | os.PathLike,
                 metadata: Mapping[str, Any] | None = None) -> Path:
    """Trained weights (LoRA-only, or all): upstream's torch layout (``{'model_state_dict': {'module.…'}}``)
    or flat safetensors; ``metadata`` (see ``describe_weights``) is stored in the same file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        extra = None if metadata is None else {METADATA_KEY: json.dumps(dict(metadata), sort_keys=True)}
        return save_state_dict(weights, path, header=extra)
    state: dict[str, Any] = {"model_state_dict": {UPSTREAM_PREFIX + n: t for n, t in weights.items()}}
    if metadata is not None:
        state[METADATA_KEY] = json.loads(json.dumps(dict(metadata)))  # plain types only (weights_only loads)
    return save_state_dict(state, path)


def read_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The description ``save_weights`` stored in a checkpoint, or None (files of other tools, older files)."""
    path = resolve_checkpoint(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                text = (handle.metadata() or {}).get(METADATA_KEY)
        except (SafetensorError, OSError, ValueError) as err:
            raise UserError(f"{path}: not a readable safetensors file ({_one_line(err)})") from None
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            raise UserError(f"{path}: its {METADATA_KEY} metadata is not JSON") from None
    else:
        try:
            # mmap reads only the small entry, but torch can map only its zip layout (older files are not)
            value = torch.load(path, map_location="cpu", weights_only=True,
                               mmap=zipfile.is_zipfile(path)).get(METADATA_KEY)
        except Exception as err:  # the same errors as load_checkpoint_file, which names them
            raise UserError(f"{path}: not a readable torch checkpoint ({_one_line(err)})") from None
    if value is not None and not isinstance(value, dict):
        raise UserError(f"{path}: its {METADATA_KEY} entry is a {type(value).__name__}, not a dict")
    return value


def describe_weights(config, *, lora_dropout: float, model_card: str | None,
                     base_checkpoint: str | os.PathLike | None) -> dict[str, Any]:
    """What a trained checkpoint needs to be used alone: the model config (sizes and LoRA settings), the
    card it was given as, and the base checkpoint's file name and SHA-256 (None when trained from random
    weights)."""
    base = None
    if base_checkpoint is not None:
        weights_file = resolve_checkpoint(base_checkpoint)
        base = {"name": Path(base_checkpoint).name, "sha256": file_sha256(weights_file)}
    return {"format": METADATA_FORMAT, "model_config": config.to_hf_config(),
            "lora_dim": config.lora_attn_dim, "lora_alpha": config.lora_attn_alpha, "lora_dropout": lora_dropout,
            "lora_attn_slices": config.lora_attn_slices,  # files without it: "qv"
            "model_card": None if model_card is None else str(model_card), "base_checkpoint": base}


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
