"""Model settings → a ready model: the one place where beam, generate, export and ``gpt2_lora.load``
turn a model card, checkpoints and LoRA flags into a GPT2LMModel.

The config is resolved once, from what the user gave and what the files say:

* ``--model_card`` (a card, or an HF config.json), when given;
* the description our trained checkpoints carry (``checkpoint.read_metadata``): the model config, LoRA
  r, alpha and slices, and the base checkpoint's name and SHA-256;
* the ``config.json`` of an HF model folder given as ``--init_checkpoint`` or ``--base_checkpoint``;
* a PEFT LoRA folder given as ``--init_checkpoint``: its r and alpha, with q, k and v adapted;
* else the command's defaults (upstream's, for checkpoints without a description).

Two sources that disagree (another model config, another r or alpha, a base checkpoint whose SHA-256
is not the one the adapter was trained on) are a one-line UserError naming both, never a silently
different model. Loading is base, then the adapter; merged for inference, in eval mode.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import lora, peft_adapter
from .checkpoint import METADATA_FORMAT, hf_config_file, load_into, read_metadata, resolve_checkpoint
from .errors import UserError
from .fileio import file_sha256
from .model import GPT2Config, GPT2LMModel

MODEL_FLAGS = ("model_card", "lora_dim", "lora_alpha")
# the config fields that decide the weights' shapes and the model's outputs
ARCHITECTURE = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "layer_norm_epsilon")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
_UNSET = object()


@dataclass(frozen=True)
class ModelSpec:
    """What the user said about the model; None = not given. The ``default_*`` fields are the command's
    defaults, used only where neither the user nor a file says anything."""

    init_checkpoint: str | None = None  # full weights, our LoRA-only checkpoint, an HF or a PEFT folder
    base_checkpoint: str | None = None  # loaded first (the pretrained GPT-2 a LoRA adapter goes over)
    model_card: str | None = None
    lora_dim: int | None = None
    lora_alpha: int | None = None
    default_card: str = "gpt2.md"
    default_lora_dim: int = 0
    default_lora_alpha: int = 128


def given_flags(parser: argparse.ArgumentParser, argv: list[str] | None) -> frozenset[str]:
    """The model flags that ``argv`` sets (parsed again onto a namespace that marks the unset ones)."""
    probe = parser.parse_args(argv, argparse.Namespace(**{name: _UNSET for name in MODEL_FLAGS}))
    return frozenset(name for name in MODEL_FLAGS if getattr(probe, name) is not _UNSET)


def spec_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None,
                   argv: list[str] | None = None) -> ModelSpec:
    """The model flags of a parsed command line. With the ``parser`` (and the ``argv`` it parsed), a flag
    left at its default counts as not given, so a checkpoint's own description decides; the parser's
    defaults apply to checkpoints without one. Without a parser every flag counts as given."""
    given = set(MODEL_FLAGS) if parser is None else given_flags(parser, argv)
    values = {name: getattr(args, name, None) if name in given else None for name in MODEL_FLAGS}
    defaults = {} if parser is None else {
        "default_card": parser.get_default("model_card"), "default_lora_dim": parser.get_default("lora_dim"),
        "default_lora_alpha": parser.get_default("lora_alpha")}
    return ModelSpec(init_checkpoint=getattr(args, "init_checkpoint", None),
                     base_checkpoint=getattr(args, "base_checkpoint", None), **values, **defaults)


# ------------------------------------------------------------------------------------------ the config
def _check_paths(spec: ModelSpec) -> None:
    for flag, path in (("--base_checkpoint", spec.base_checkpoint), ("--init_checkpoint", spec.init_checkpoint)):
        if path is not None and not Path(path).exists():
            raise UserError(f"{flag} {path}: no such file or folder")
    if peft_adapter.is_peft_folder(spec.base_checkpoint):
        raise UserError(f"--base_checkpoint {spec.base_checkpoint} is a PEFT adapter, not a base model: pass it as "
                        f"--init_checkpoint and the model it adapts as --base_checkpoint")


def adapter_metadata(spec: ModelSpec) -> dict[str, Any] | None:
    """The description in ``--init_checkpoint`` (None: a file without one, an HF or a PEFT folder)."""
    init = spec.init_checkpoint
    if init is None or peft_adapter.is_peft_folder(init):
        return None
    meta = read_metadata(init)
    if meta is None:
        return None
    if not isinstance(meta.get("format"), int) or meta["format"] > METADATA_FORMAT:
        raise UserError(f"{init}: its description has format {meta.get('format')!r}; this gpt2-lora reads "
                        f"format {METADATA_FORMAT} (a newer version wrote it?)")
    missing = [k for k in ("model_config", "lora_dim", "lora_alpha") if k not in meta]
    if missing:
        raise UserError(f"{init}: its description lacks {', '.join(missing)}")
    return meta


def _differences(a: GPT2Config, b: GPT2Config) -> str:
    return ", ".join(f"{k} {getattr(a, k)} vs {getattr(b, k)}" for k in ARCHITECTURE if getattr(a, k) != getattr(b, k))


def _architecture(spec: ModelSpec, meta: dict | None) -> GPT2Config:
    """The model's sizes, from every source that states them; they must agree."""
    stated: list[tuple[str, GPT2Config]] = []
    if spec.model_card is not None:
        stated.append((f"--model_card {spec.model_card}", GPT2Config.resolve(spec.model_card)))
    if meta is not None:
        stated.append((f"the model {spec.init_checkpoint} was trained on",
                       GPT2Config.from_hf_config(meta["model_config"])))
    for path in (spec.init_checkpoint, spec.base_checkpoint):
        if path is not None and Path(path).is_dir() and (Path(path) / "config.json").is_file():
            stated.append((str(Path(path) / "config.json"), GPT2Config.from_hf_config(path)))
    if not stated:
        return GPT2Config.resolve(spec.default_card)
    (first_label, first), *others = stated
    for label, other in others:
        differ = _differences(first, other)
        if differ:
            raise UserError(f"{first_label} and {label} are different models ({differ})")
    return first


def config_hint(path: str | None, config: GPT2Config) -> str:
    """For a load that failed: '; its DIR/config.json says n_embd 32, ...: pass --model_card DIR/config.json' when
    an HF config.json in ``path``'s folder (or beside the file) describes another model than ``config``."""
    found = None if path is None else hf_config_file(path)
    try:
        theirs = None if found is None else GPT2Config.from_hf_config(found)
    except (UserError, ValueError):
        return ""
    differ = [f"{k} {getattr(theirs, k)}" for k in ARCHITECTURE if theirs and getattr(theirs, k) != getattr(config, k)]
    return f"; its {found} says {', '.join(differ)}: pass --model_card {found}" if differ else ""


def _lora_settings(spec: ModelSpec, meta: dict | None) -> dict[str, Any]:
    """lora_attn_dim, lora_attn_alpha and lora_attn_slices: the file's, which flags may repeat but not change."""
    init = spec.init_checkpoint
    if meta is not None:
        said = {"lora_dim": meta["lora_dim"], "lora_alpha": meta["lora_alpha"]}
        slices, who = meta.get("lora_attn_slices", "qv"), f"{init} was trained with"
    elif peft_adapter.is_peft_folder(init):
        adapter = peft_adapter.read_adapter(init)
        said = {"lora_dim": adapter.r, "lora_alpha": adapter.alpha}
        slices, who = "qkv", f"the PEFT adapter {init} has"
    else:
        dim = spec.default_lora_dim if spec.lora_dim is None else spec.lora_dim
        alpha = spec.default_lora_alpha if spec.lora_alpha is None else spec.lora_alpha
        return {"lora_attn_dim": dim, "lora_attn_alpha": alpha, "lora_attn_slices": "qv"}
    for name in ("lora_dim", "lora_alpha") if said["lora_dim"] else ("lora_dim",):  # alpha is moot without LoRA
        given = getattr(spec, name)
        if given is not None and given != said[name]:
            raise UserError(f"--{name} {given}, but {who} --{name} {said[name]} (leave the flag out: the file "
                            f"says it)")
    return {"lora_attn_dim": said["lora_dim"], "lora_attn_alpha": said["lora_alpha"], "lora_attn_slices": slices}


def _check_base(spec: ModelSpec, meta: dict | None) -> None:
    """A LoRA adapter of ours runs only over the base it was trained on: the same file, by SHA-256."""
    if meta is None or not meta["lora_dim"]:
        return  # no description, or full weights (no base needed)
    init, base, trained_on = spec.init_checkpoint, spec.base_checkpoint, meta.get("base_checkpoint")
    if trained_on is None:
        raise UserError(f"{init} was trained over randomly initialised weights (no base checkpoint), which no "
                        f"file holds; use the merged model that train --save_merged writes")
    if base is None:
        raise UserError(f"{init} is a LoRA adapter for {trained_on['name']} (sha256 {trained_on['sha256'][:12]}…): "
                        f"pass that file as --base_checkpoint")
    digest = file_sha256(resolve_checkpoint(base))
    if digest != trained_on["sha256"]:
        raise UserError(f"--base_checkpoint {base} (sha256 {digest[:12]}…) is not the base {init} was trained on "
                        f"({trained_on['name']}, sha256 {trained_on['sha256'][:12]}…)")


def resolve_config(spec: ModelSpec) -> GPT2Config:
    """The model config ``spec`` and its files describe (see the module docstring); UserError on conflicts."""
    _check_paths(spec)
    meta = adapter_metadata(spec)
    try:
        config = dataclasses.replace(_architecture(spec, meta), **_lora_settings(spec, meta))
    except ValueError as err:  # GPT2Config names its fields (and the flag, for --lora_dim)
        raise UserError(str(err)) from None
    _check_base(spec, meta)
    if peft_adapter.is_peft_folder(spec.init_checkpoint) and spec.base_checkpoint is None:
        raise UserError(f"--init_checkpoint {spec.init_checkpoint} is a PEFT adapter: pass the model it adapts "
                        f"as --base_checkpoint")
    return config


# ------------------------------------------------------------------------------------------- the model
def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _swapped_roles(spec: ModelSpec) -> str | None:
    """Why loading failed when --base_checkpoint is one of our LoRA adapters (None: it is not). Read only
    after a failure: a base in torch's pre-zip layout is read whole to look for a description."""
    try:
        meta = read_metadata(spec.base_checkpoint)
    except UserError:
        return None
    if not isinstance(meta, dict) or not meta.get("lora_dim"):
        return None
    trained_on = (meta.get("base_checkpoint") or {}).get("name", "the model it was trained on")
    return (f"--base_checkpoint {spec.base_checkpoint} is a LoRA adapter (r={meta['lora_dim']}), not a base model: "
            f"pass it as --init_checkpoint and its base ({trained_on}) as --base_checkpoint")


def _check_lora_loaded(config: GPT2Config, report, path: str) -> None:
    """LoRA flags over weights without LoRA would decode with the adapter's random start (B = 0: the base)."""
    if not config.lora_attn_dim or report is None or not report.missing_lora:
        return
    missing, total = report.missing_lora, 2 * config.n_layer  # lora_A and lora_B of each layer's c_attn
    what = ("holds no LoRA weights" if len(missing) >= total
            else f"lacks {len(missing)} of the model's {total} LoRA tensors (first: {missing[0]})")
    raise UserError(f"--lora_dim {config.lora_attn_dim}, but {path} {what}: pass the trained adapter as "
                    f"--init_checkpoint (over its base as --base_checkpoint), or leave --lora_dim out")


def load_model(spec: ModelSpec, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
               *, config: GPT2Config | None = None, merge: bool = True,
               say: Callable[[str], None] = _say) -> GPT2LMModel:
    """Build the model (``config``, else ``resolve_config(spec)``), load the base and then the adapter, merge
    LoRA into the weights (``merge``), and return it in eval mode on ``device`` in ``dtype``."""
    config = resolve_config(spec) if config is None else config
    model = GPT2LMModel(config)
    base, init = spec.base_checkpoint, spec.init_checkpoint
    paths = [p for p in (base, init) if p]
    if init is not None and peft_adapter.is_peft_folder(init):
        try:
            report = load_into(model, *paths[:-1])
        except UserError as err:
            raise UserError(f"{err}{config_hint(base, config)}") from None
        adapter = peft_adapter.read_adapter(init)
        try:
            model.load_weight(peft_adapter.imported_state_dict(adapter, config.n_layer, config.n_embd))
        except UserError as err:
            raise UserError(str(err) if str(init) in str(err) else f"{init}: {err}") from None
        say(f"loaded {' + '.join(paths)} (PEFT LoRA r={adapter.r} on q, k, v)")
    elif paths:
        try:
            report = load_into(model, *paths)
        except UserError as err:
            hint = "".join(dict.fromkeys(config_hint(path, config) for path in paths))
            raise UserError((base and _swapped_roles(spec)) or f"{err}{hint}") from None
        _check_lora_loaded(config, report, paths[-1])
        say(f"loaded {' + '.join(paths)} ({report.kind})")
    else:
        say("warning: no --init_checkpoint; decoding with random weights")
    if merge:
        lora.merge(model)  # W + BA once, so decoding runs plain matmuls
    return model.eval().to(device=device, dtype=dtype)


def precision_dtype(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def load(base_checkpoint: str | None = None, adapter: str | None = None, *, model_card: str | None = None,
         lora_dim: int | None = None, lora_alpha: int | None = None, device: str | None = None,
         precision: str = "fp32") -> GPT2LMModel:
    """A ready model for notebooks: ``base_checkpoint`` (a pretrained GPT-2 file or HF folder), then
    ``adapter`` (our checkpoint, full or LoRA-only, or a PEFT LoRA folder). The config comes from the files
    where they say it (``model_card`` otherwise, default gpt2.md); merged, eval mode; ``device`` None picks
    CUDA when present; ``precision`` fp32 or bf16."""
    from .devices import resolve_device

    dtype = precision_dtype(precision)
    spec = ModelSpec(init_checkpoint=None if adapter is None else str(adapter),
                     base_checkpoint=None if base_checkpoint is None else str(base_checkpoint),
                     model_card=None if model_card is None else str(model_card), lora_dim=lora_dim,
                     lora_alpha=lora_alpha)
    if spec.init_checkpoint is None and spec.base_checkpoint is None:
        raise UserError("gpt2_lora.load: pass base_checkpoint and/or adapter (no random weights)")
    return load_model(spec, resolve_device(device), dtype, say=lambda message: None)
