"""PEFT LoRA adapters on GPT-2's fused ``attn.c_attn``, read and written without importing peft.

The two layouts, per layer (d = n_embd; c_attn's 3d outputs are q, k, v in that order):

* PEFT (``LoraConfig(target_modules=["c_attn"])``; GPT-2's Conv1D makes it fan_in_fan_out):
  ``lora_A.weight`` (r, d) and ``lora_B.weight`` (3d, r); the update of the output is
  ``x Aᵀ Bᵀ · lora_alpha / r`` on all 3d outputs, with one A shared by q, k and v.
* Ours (``lora.MergedLinear``, ``enable_lora`` = the config's ``lora_attn_slices``): with n enabled
  slices, ``lora_A`` (n·r, d) stacks each slice's own A and ``lora_B`` (n·d, r) each slice's B; slice g
  gets ``x A_gᵀ B_gᵀ · alpha / r``.

Import (PEFT → ours, the three slices enabled): A_g = A for every slice and B_g = the g-th third of B, so
``lora_A = [A; A; A]`` and ``lora_B = B`` itself: the same update, the same scaling.
Export (ours → PEFT): ``A' = lora_A`` (n·r, d) and ``B' = MergedLinear.block_B()`` (3d, n·r: slice g's B
in its own rows and in the columns of its A rows, zeros elsewhere), with r' = n·r and alpha' = n·alpha,
so alpha'/r' = alpha/r. Exact for inference and merging; training B' further in PEFT would also train
its zero blocks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UserError

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
WEIGHTS_NAME = WEIGHT_FILES[0]
PEFT_KEY = "base_model.model.transformer.h.{layer}.attn.c_attn.lora_{part}.weight"
_PEFT_KEY = re.compile(r"^(?:base_model\.model\.)?(?:transformer\.)?h\.(\d+)\.attn\.c_attn\.lora_([AB])\.weight$")

# adapter_config.json keys that do not change what the saved adapter computes (or are checked on their own)
_HARMLESS = {"task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
             "inference_mode", "r", "lora_alpha", "target_modules", "lora_dropout", "fan_in_fan_out", "bias",
             "init_lora_weights", "exclude_modules", "layers_to_transform", "layers_pattern", "megatron_core",
             "qalora_group_size", "ensure_weight_tying"}
# initialisations that leave the base weights alone (PiSSA, OLoRA, LoftQ, ... change them)
_PLAIN_INITS = (True, False, "gaussian")


def is_peft_folder(path) -> bool:
    return path is not None and (Path(path) / CONFIG_FILE).is_file()


@dataclass(frozen=True)
class PeftAdapter:
    """A PEFT LoRA folder whose settings we can run: rank ``r``, ``alpha``, the weights file."""

    folder: Path
    r: int
    alpha: int | float
    weights_file: Path


def read_adapter(folder) -> PeftAdapter:
    """Read and check ``adapter_config.json``: a one-line UserError for anything but plain LoRA on c_attn."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read it ({err})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(config).__name__}")
    if config.get("peft_type") != "LORA":
        raise UserError(f"{path}: peft_type {config.get('peft_type')!r}; only LoRA adapters can be imported")
    r, alpha = config.get("r"), config.get("lora_alpha")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise UserError(f"{path}: r must be a positive integer, got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise UserError(f"{path}: lora_alpha must be a positive number, got {alpha!r}")
    targets = config.get("target_modules")
    names = [targets] if isinstance(targets, str) else list(targets or [])
    others = [n for n in names if not (n == "c_attn" or n.endswith(".c_attn"))]
    if others or not names:
        raise UserError(f"{path}: targets {', '.join(others or ['no module'])}; GPT-2 here adapts only attn.c_attn")
    unsupported = [f"{key}={value!r}" for key, value in config.items()
                   if key not in _HARMLESS and value not in (None, False, {}, [], "")]
    if config.get("bias", "none") != "none":
        unsupported.insert(0, f"bias={config['bias']!r}")
    if config.get("init_lora_weights", True) not in _PLAIN_INITS:
        unsupported.append(f"init_lora_weights={config['init_lora_weights']!r}")
    if unsupported:
        raise UserError(f"{path}: uses {', '.join(unsupported)}, which this GPT-2's LoRA does not have "
                        f"(plain LoRA on c_attn only)")
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise UserError(f"{folder}: PEFT adapter without weights (expected {' or '.join(WEIGHT_FILES)})")
    return PeftAdapter(folder, r, alpha, weights)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from .checkpoint import load_checkpoint_file

    return load_checkpoint_file(path)


def imported_state_dict(adapter: PeftAdapter, n_layer: int, n_embd: int) -> dict[str, torch.Tensor]:
    """Our LoRA state dict (q, k, v enabled, rank ``adapter.r``) with the PEFT adapter's update."""
    found: dict[tuple[int, str], torch.Tensor] = {}
    others = []
    for key, value in _load_tensors(adapter.weights_file).items():
        match = _PEFT_KEY.match(key)
        if match is None:
            others.append(key)
        else:
            found[int(match.group(1)), match.group(2)] = value
    if others:
        more = f" (+{len(others) - 3} more)" if len(others) > 3 else ""
        raise UserError(f"{adapter.weights_file}: holds {', '.join(sorted(others)[:3])}{more}, not c_attn's "
                        f"lora_A/lora_B; GPT-2 here adapts only attn.c_attn")
    missing = [i for i in range(n_layer) if (i, "A") not in found or (i, "B") not in found]
    extra = sorted({i for i, _ in found if i >= n_layer})
    if missing or extra:
        what = f"no c_attn LoRA for layer(s) {missing[:6]}" if missing else f"layer(s) {extra[:6]} beyond n_layer"
        raise UserError(f"{adapter.weights_file}: {what} of this {n_layer}-layer model")
    state = {}
    for i in range(n_layer):
        a, b = found[i, "A"], found[i, "B"]
        if tuple(a.shape) != (adapter.r, n_embd) or tuple(b.shape) != (3 * n_embd, adapter.r):
            raise UserError(f"{adapter.weights_file}: layer {i} has lora_A {tuple(a.shape)}, lora_B "
                            f"{tuple(b.shape)}; r={adapter.r} and n_embd={n_embd} need "
                            f"{(adapter.r, n_embd)} and {(3 * n_embd, adapter.r)}")
        prefix = f"transformer.h.{i}.attn.c_attn."
        state[prefix + "lora_A"] = a.repeat(3, 1)  # [A; A; A]: q, k and v share PEFT's A
        state[prefix + "lora_B"] = b              # its thirds are the q, k and v slices' Bs
    return state


def exported_tensors(model) -> tuple[dict[str, torch.Tensor], int, int | float]:
    """(PEFT tensors, r', alpha') for a GPT2LMModel's c_attn LoRA (see the module docstring)."""
    layers = [block.attn.c_attn for block in model.transformer.h]
    first = layers[0]
    if not first.has_lora:
        raise UserError("the model has no LoRA weights to export (lora_dim 0): export it as a merged HF folder")
    n = sum(first.enable_lora)
    tensors = {}
    for i, layer in enumerate(layers):
        tensors[PEFT_KEY.format(layer=i, part="A")] = layer.lora_A.detach().float().cpu().contiguous()
        tensors[PEFT_KEY.format(layer=i, part="B")] = layer.block_B().detach().float().cpu().contiguous()
    return tensors, n * first.r, n * first.lora_alpha


def adapter_config(r: int, alpha: int | float, base_name: str | None) -> dict:
    """The adapter_config.json PEFT reads for a LoRA of rank ``r`` on c_attn."""
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_name,
            "r": r, "lora_alpha": alpha, "target_modules": ["c_attn"], "fan_in_fan_out": True, "bias": "none",
            "lora_dropout": 0.0, "use_rslora": False, "use_dora": False, "inference_mode": True}
