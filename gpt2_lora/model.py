"""GPT-2 with a LoRA-adapted fused attention projection, as in microsoft/LoRA examples/NLG.

Same architecture, parameter names and shapes as upstream ``src/model.py`` (and HF GPT-2): pre-LN
blocks, tanh-GELU, a tied LM head, no dropout except LoRA's, and ``attn.c_attn`` a
``lora.MergedLinear`` with q and v adapted (``lora_attn_slices`` can add k, for imported adapters).
Differences: attention goes through ``F.scaled_dot_product_attention`` (or a cache's own ``attend``, as
beam search's ``TreeCache`` brings); a preallocated ``KVCache``
replaces upstream's concatenated ``past``; ``load_weight`` refuses to leave the backbone random
(upstream issue #138).
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import lora
from .errors import UserError

# Flash attention over variable-length segments: the aten op under torch.nn.attention.varlen (torch's
# nested-tensor attention uses it too; it has a backward). Called directly because the public wrapper
# changes between releases (2.10 takes is_causal, later ones window_size) and has a cuDNN branch.
FLASH_VARLEN = getattr(torch.ops.aten, "_flash_attention_forward", None)

# The three sizes of the paper (upstream gpt2_ft.py / gpt2_beam.py --model_card).
CARDS: dict[str, dict[str, int]] = {
    "gpt2.sm": dict(n_embd=768, n_layer=12, n_head=12),
    "gpt2.md": dict(n_embd=1024, n_layer=24, n_head=16),
    "gpt2.lg": dict(n_embd=1280, n_layer=36, n_head=20),
}

# Which of c_attn's q, k, v slices may carry LoRA (in that order).
LORA_SLICES = ("q", "k", "v", "qk", "qv", "kv", "qkv")

# HF config.json keys that map one-to-one onto ours.
_HF_KEYS = ("vocab_size", "n_positions", "n_ctx", "n_embd", "n_layer", "n_head", "layer_norm_epsilon",
            "initializer_range")


@dataclass
class GPT2Config:
    """Model hyper-parameters, with the keyword names of upstream's ``GPT2Config``."""

    vocab_size: int = 50257
    n_positions: int = 1024
    n_ctx: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    lora_attn_dim: int = 0
    lora_attn_alpha: int = 128
    lora_dropout: float = 0.0
    lora_init: str = "default"  # or "gaussian" (A and B ~ N(0, 0.02))
    lora_attn_slices: str = "qv"  # the c_attn slices with LoRA: the paper's q and v, or e.g. "qkv" (PEFT adapters)

    def __post_init__(self):  # ValueError in the field names; card/from_hf_config/resolve name the source
        for name in ("vocab_size", "n_positions", "n_ctx", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.lora_attn_dim < 0:  # the flag in brackets: beam's CLI shows this message as it is
            raise ValueError(f"lora_attn_dim (--lora_dim) must be >= 0, got {self.lora_attn_dim}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.lora_init not in lora.INITS:
            raise ValueError(f"lora_init must be one of {', '.join(lora.INITS)}, got {self.lora_init!r}")
        if self.lora_attn_slices not in LORA_SLICES:
            raise ValueError(f"lora_attn_slices must be one of {', '.join(LORA_SLICES)}, got {self.lora_attn_slices!r}")

    @property
    def enable_lora(self) -> list[bool]:
        """``MergedLinear``'s enable_lora for c_attn (q, k, v): [True, False, True] for the paper's "qv"."""
        return [name in self.lora_attn_slices for name in "qkv"]

    @classmethod
    def _build(cls, values: Mapping[str, Any], what: str) -> "GPT2Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UserError(f"{what}: unknown GPT2Config field(s) {', '.join(unknown)}")
        try:
            return cls(**values)
        except ValueError as err:
            raise UserError(f"{what}: {err}") from None

    @classmethod
    def card(cls, name: str, **overrides) -> "GPT2Config":
        """One of the paper's model sizes: ``gpt2.sm``, ``gpt2.md``, ``gpt2.lg``."""
        if name not in CARDS:
            raise UserError(f"unknown model card {name!r}; choose one of {', '.join(CARDS)}")
        return cls._build({**CARDS[name], **overrides}, f"model card {name}")

    @classmethod
    def from_hf_config(cls, path_or_dict: str | Path | Mapping[str, Any], **overrides) -> "GPT2Config":
        """From an HF GPT-2 ``config.json`` (a file, a directory holding one, or the parsed dict)."""
        if isinstance(path_or_dict, Mapping):
            hf, where = dict(path_or_dict), "HF config"
        else:
            path = Path(path_or_dict)
            if path.is_dir():
                path = path / "config.json"
            where = str(path)
            try:
                hf = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise UserError(f"HF config not found: {path}") from None
            except (OSError, UnicodeDecodeError) as err:
                raise UserError(f"{path}: cannot read HF config ({err})") from None
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(hf, dict):
                raise UserError(f"{path}: expected a JSON object, got {type(hf).__name__}")
        n_inner = hf.get("n_inner")
        if n_inner is not None and n_inner != 4 * hf.get("n_embd", cls.n_embd):
            raise UserError(f"{where}: n_inner={n_inner} is not supported (GPT-2 uses 4 * n_embd)")
        act = hf.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            raise UserError(f"{where}: activation_function={act!r} is not supported (GPT-2 uses gelu_new)")
        values = {k: hf[k] for k in _HF_KEYS if k in hf}
        if "n_ctx" not in values and "n_positions" in values:
            values["n_ctx"] = values["n_positions"]
        return cls._build({**values, **overrides}, where)

    def to_hf_config(self) -> dict[str, Any]:
        """The HF GPT-2 ``config.json`` for this model (what ``from_hf_config`` reads back)."""
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
                **{k: getattr(self, k) for k in _HF_KEYS}}

    @classmethod
    def resolve(cls, card_or_path: str | Path, **overrides) -> "GPT2Config":
        """A card name, or a path to an HF ``config.json`` (or its directory)."""
        if str(card_or_path) in CARDS:
            return cls.card(str(card_or_path), **overrides)
        if Path(card_or_path).exists():
            return cls.from_hf_config(card_or_path, **overrides)
        raise UserError(f"model {str(card_or_path)!r} is neither a card ({', '.join(CARDS)}) "
                        f"nor an existing config.json")


class KVCache:
    """Keys and values of every layer, preallocated as (n_layer, B, n_head, max_len, head_dim).

    The storage is allocated at the first ``update`` with that tensor's dtype and device (so it
    matches autocast), unless ``dtype``/``device`` are given. The model calls ``update`` once per
    layer and then ``advance`` once per forward. ``reorder`` keeps or permutes batch rows (for a caller's
    own search; ``gpt2_lora.beam`` extends this class with an in-place ``keep_rows`` instead).
    """

    def __init__(self, config: GPT2Config, batch_size: int, max_len: int | None = None,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        self.n_layer = config.n_layer
        self.batch_size = batch_size
        self.max_len = config.n_positions if max_len is None else max_len
        self.shape = (config.n_layer, batch_size, config.n_head, self.max_len, config.n_embd // config.n_head)
        self.length = 0
        self.k = self.v = None
        if dtype is not None or device is not None:
            self._allocate(dtype or torch.get_default_dtype(), device)

    def _allocate(self, dtype, device):
        self.k = torch.zeros(self.shape, dtype=dtype, device=device)
        self.v = torch.zeros(self.shape, dtype=dtype, device=device)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, D) at positions [length, length+T); return views of [0, length+T)."""
        if self.k is None:
            self._allocate(k.dtype, k.device)
        end = self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KVCache is full: {end} tokens > max_len={self.max_len}")
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search); ``len(index)`` may differ from the batch size."""
        if self.k is None:
            self.batch_size = len(index)
            self.shape = (self.shape[0], len(index), *self.shape[2:])
            return
        index = index.to(self.k.device)
        if len(index) == self.batch_size:
            n = self.length
            self.k[:, :, :, :n] = self.k[:, index, :, :n]
            self.v[:, :, :, :n] = self.v[:, index, :, :n]
        else:
            self.k, self.v = self.k[:, index], self.v[:, index]
            self.batch_size = len(index)
            self.shape = tuple(self.k.shape)


def attention_mask(keep: torch.Tensor, query_len: int) -> torch.Tensor:
    """Bool mask (B, 1, T, S) for a padded batch: causal (aligned to the newest token) and hiding
    keys where ``keep`` (B, S) is False. Each query may always see its own position, so a padding
    query never has an all-False row (which would give NaN and poison later layers)."""
    S = keep.size(-1)
    causal = torch.ones(query_len, S, dtype=torch.bool, device=keep.device).tril(S - query_len)
    own = torch.zeros_like(causal)
    own[:, S - query_len:] = torch.eye(query_len, dtype=torch.bool, device=keep.device)
    return causal[None, None] & (keep[:, None, None, :].bool() | own[None, None])


@dataclass(frozen=True)
class Segments:
    """``attn_mask`` for packed rows on the variable-length kernel: the flattened (B*T) tokens cut at
    ``cu_seqlens`` ((S+1,) int32 offsets, zero-length segments allowed), each token attending causally
    within its segment; ``max_len`` bounds a segment's length (the row length)."""
    cu_seqlens: torch.Tensor
    max_len: int


def segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, segments: Segments) -> torch.Tensor:
    """Causal attention within segments; q, k, v and the result are (B*T, heads, head_dim)."""
    cu, n = segments.cu_seqlens, segments.max_len
    return FLASH_VARLEN(q, k, v, cu, cu, n, n, 0.0, True, False)[0]  # dropout 0, causal, no debug mask


class Conv1D(nn.Module):
    """A linear layer whose weight is stored (in, out), as in HF / upstream GPT-2."""

    def __init__(self, n_out: int, n_in: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight)
        return out.view(*x.shape[:-1], out.size(-1))


class Attention(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        lora_kwargs = {} if config.lora_init == "default" else {"init": config.lora_init}
        self.c_attn = lora.MergedLinear(
            config.n_embd, 3 * config.n_embd, r=config.lora_attn_dim, lora_alpha=config.lora_attn_alpha,
            lora_dropout=config.lora_dropout, enable_lora=config.enable_lora, fan_in_fan_out=True,
            merge_weights=False, **lora_kwargs)  # as upstream: decoding merges explicitly
        self.c_proj = Conv1D(config.n_embd, config.n_embd)

    def forward(self, x, layer, cache, attn_mask, is_causal):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        if isinstance(attn_mask, Segments):  # packed rows: (B*T, heads, head_dim) views, no transposes
            q, k, v = (t.reshape(B * T, self.n_head, C // self.n_head) for t in (q, k, v))
            return self.c_proj(segment_attention(q, k, v, attn_mask).reshape(B, T, C))
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(layer, k, v)
        attend = getattr(cache, "attend", None) or F.scaled_dot_product_attention  # a cache may bring its own
        y = attend(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.c_fc = Conv1D(4 * config.n_embd, config.n_embd)
        self.c_proj = Conv1D(config.n_embd, 4 * config.n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x, layer, cache, attn_mask, is_causal):
        x = x + self.attn(self.ln_1(x), layer, cache, attn_mask, is_causal)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)


@dataclass
class LoadReport:
    """What ``GPT2LMModel.load_weight`` did. Names are relative to ``transformer.``."""

    kind: str                                   # "base", "base+lora" or "lora-only"
    upstream: bool                              # had the {'model_state_dict'} wrapper or 'module.' prefix
    loaded: list[str] = field(default_factory=list)
    missing_lora: list[str] = field(default_factory=list)   # LoRA weights left at their init
    unexpected: list[str] = field(default_factory=list)     # in the file, not in the model (ignored)
    ignored: list[str] = field(default_factory=list)        # known extras: tied lm_head, attn masks


# Keys that GPT-2 checkpoints carry but that hold nothing to load: the tied LM head and the old
# causal-mask buffers of HF / upstream attention.
_IGNORED = re.compile(r"^(lm_head\.(decoder\.)?weight|h\.\d+\.attn\.(bias|masked_bias))$")


def _transformer_name(key: str) -> str:
    """A checkpoint key (or metadata prefix) relative to ``transformer``: without ``module.`` (DDP /
    upstream) and ``transformer.``."""
    for strip in ("module.", "transformer."):
        if key == strip[:-1]:
            return ""
        if key.startswith(strip):
            key = key[len(strip):]
    return key


def _short_list(names: list[str], limit: int = 6) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def padded_head(weight: torch.Tensor, multiple: int = 64) -> torch.Tensor:
    """The (vocab, n_embd) LM head with zero rows up to a multiple of ``multiple`` for 16-bit weights:
    50,257 output columns are misaligned for tensor-core GEMMs, and cuBLAS then takes a much slower
    kernel (the E2E beam search's LM head: 427 ms against 55 ms padded, on an H200). Logits of the extra
    rows are cut off after the matmul (``GPT2LMModel.logits``), so every kept logit is the same dot
    product. fp32 weights are returned as they are (no tensor cores)."""
    extra = -weight.size(0) % multiple
    if weight.dtype not in (torch.bfloat16, torch.float16) or extra == 0:
        return weight
    return F.pad(weight.detach(), (0, 0, 0, extra))


class GPT2LMModel(nn.Module):
    """GPT-2 language model; ``model(input_ids)`` returns the logits (B, T, vocab)."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.apply(self._init_weights)
        self.base_loaded = False  # set by load_weight once every non-LoRA weight came from a file

    def _init_weights(self, module: nn.Module) -> None:
        # Upstream: N(0, 0.02) weights and zero biases for linear layers (c_attn included, its LoRA
        # A/B keep their own init) and embeddings; LayerNorm ones/zeros.
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, Conv1D)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def hidden_states(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                      cache=None, attn_mask: torch.Tensor | Segments | None = None,
                      residual_dtype: torch.dtype | None = None) -> torch.Tensor:
        """Final hidden states (B, T, n_embd) after ``ln_f``.

        ``cache``: any object with ``length``, ``update(layer, k, v)`` and ``advance(n)``.
        ``attn_mask``: bool, broadcastable to (B, 1, T, S) with S = cache length + T, True = may
        attend; used as given (include causality yourself, see ``attention_mask``). Without it the
        model applies the causal mask aligned to the newest token. A ``Segments`` (no cache) runs
        the variable-length kernel instead.
        ``residual_dtype``: the dtype of the residual stream (default: the embeddings', fp32).
        """
        T = input_ids.size(-1)
        past = cache.length if cache is not None else 0
        if position_ids is None:
            if past + T > self.config.n_positions:
                raise ValueError(f"sequence of {past + T} tokens exceeds n_positions={self.config.n_positions}")
            position_ids = torch.arange(past, past + T, device=input_ids.device)[None]
        is_causal = False
        if isinstance(attn_mask, Segments):
            if cache is not None or FLASH_VARLEN is None:
                raise ValueError("Segments attention needs torch's flash attention and no cache")
        elif attn_mask is not None:
            if attn_mask.dtype != torch.bool:
                raise ValueError(f"attn_mask must be bool (True = may attend), got {attn_mask.dtype}")
        elif past == 0:
            is_causal = T > 1  # top-left = bottom-right alignment when there is no past
        elif T > 1:  # a chunk after a prefill: query i sees every past key and chunk keys <= i
            attn_mask = torch.ones(T, past + T, dtype=torch.bool, device=input_ids.device).tril(past)
        x = self.transformer.wte(input_ids) + self.transformer.wpe(position_ids)
        if residual_dtype is not None:
            x = x.to(residual_dtype)
        for i, block in enumerate(self.transformer.h):
            x = block(x, i, cache, attn_mask, is_causal)
        if cache is not None:
            cache.advance(T)
        return self.transformer.ln_f(x)

    def logits(self, hidden: torch.Tensor, head: torch.Tensor | None = None) -> torch.Tensor:
        """Tied LM head: hidden @ wte.weight.T; ``head``: that weight as ``padded_head`` gave it."""
        if head is None:
            return F.linear(hidden, self.transformer.wte.weight)
        return F.linear(hidden, head)[..., :self.config.vocab_size]

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None, cache=None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(self.hidden_states(input_ids, position_ids, cache, attn_mask))

    @torch.no_grad()
    def load_weight(self, state_dict: Mapping[str, torch.Tensor]) -> LoadReport:
        """Load an HF GPT-2, upstream LoRA (``{'model_state_dict': ...}``, ``module.`` prefixes) or
        LoRA-only state dict. Raises UserError when the backbone would stay random (keys missing and
        no base loaded before), on LoRA weights the model has no place for, and on shape mismatches.
        """
        upstream = "model_state_dict" in state_dict
        if upstream:
            state_dict = state_dict["model_state_dict"]
        if not isinstance(state_dict, Mapping):
            raise UserError(f"checkpoint's model_state_dict is a {type(state_dict).__name__}, not a dict of tensors")
        ours = dict(self.transformer.named_parameters())
        found: dict[str, torch.Tensor] = {}
        ignored, unexpected = [], []
        head = None
        for key, value in state_dict.items():
            name = _transformer_name(key)
            upstream = upstream or key.startswith("module.")
            for old, new in ((".g", ".weight"), (".b", ".bias"), (".w", ".weight")):  # TF-style names
                if name.endswith(old) and name[: -len(old)] + new in ours:
                    name = name[: -len(old)] + new
            if name in ours:
                found[name] = value
            elif _IGNORED.match(name):
                ignored.append(key)
                if name.startswith("lm_head"):
                    head = value
            else:
                unexpected.append(key)

        bad_lora = [k for k in unexpected if "lora_" in k]
        if bad_lora:
            raise UserError(f"checkpoint has LoRA weights ({_short_list(bad_lora, 3)}) but the model has none "
                            f"here (lora_attn_dim={self.config.lora_attn_dim}); pass the --lora_dim it was trained with")
        if not found:
            raise UserError(f"no GPT-2 weights found in the checkpoint (first keys: {_short_list(list(state_dict), 4)})")
        for name, value in found.items():
            if not isinstance(value, torch.Tensor):
                raise UserError(f"checkpoint entry {name} is a {type(value).__name__}, not a tensor")
            if tuple(value.shape) != tuple(ours[name].shape):
                raise UserError(f"checkpoint weight {name} has shape {tuple(value.shape)}, the model expects "
                                f"{tuple(ours[name].shape)} (wrong model card / config"
                                f"{', or --lora_dim' if 'lora_' in name else ''}?)")

        missing = [n for n in ours if n not in found]
        missing_base = [n for n in missing if "lora_" not in n]
        has_lora = any("lora_" in n for n in found)
        if missing_base and not self.base_loaded:
            what = "a LoRA-only checkpoint" if has_lora else "the checkpoint"
            raise UserError(f"{what} lacks {len(missing_base)} base weight(s) ({_short_list(missing_base)}) "
                            f"and no pretrained GPT-2 was loaded first; load the base checkpoint before it "
                            f"(gpt2_lora.beam: --base_checkpoint)")
        if head is not None and "wte.weight" in found and not torch.equal(head, found["wte.weight"]):
            warnings.warn("checkpoint lm_head differs from wte; GPT-2 ties them, so wte is used", stacklevel=2)
        if unexpected:
            warnings.warn(f"load_weight ignored {len(unexpected)} unexpected key(s): {_short_list(unexpected)}",
                          stacklevel=2)
        # Load into unmerged layers, then merge back. The file's per-module record of merged weights
        # (a state dict saved after eval()) is kept, under the names the transformer sees.
        loadable = OrderedDict(found)
        loadable._metadata = OrderedDict(
            (_transformer_name(key), value) for key, value in getattr(state_dict, "_metadata", {}).items())
        merged = [m for m in self.modules() if isinstance(m, lora.LoRALayer) and m.merged]
        for module in merged:
            module.unmerge()
        self.transformer.load_state_dict(loadable, strict=False)
        for module in merged:
            module.merge()
        if not missing_base:
            self.base_loaded = True
        kind = "lora-only" if missing_base else ("base+lora" if has_lora else "base")
        return LoadReport(kind=kind, upstream=upstream, loaded=sorted(found),
                          missing_lora=[n for n in missing if "lora_" in n], unexpected=unexpected,
                          ignored=ignored)
