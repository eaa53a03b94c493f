"""LoRA layers and helpers with the loralib 0.1.2 API (Hu et al., 2021).

``import gpt2_lora.lora as lora`` replaces ``import loralib as lora``: same classes, constructor
arguments, parameter names and shapes, so loralib checkpoints load with ``strict=True``.
Differences, all where loralib is wrong or slow:

- ``MergedLinear.forward`` runs the low-rank path on activations instead of building ΔW (issue #109);
- a state dict records whether its weights are merged (``_metadata[...]["lora_merged"]``, kept by
  ``torch.save``), and loading puts each layer back in its own state: a checkpoint saved after
  ``eval()`` loads correctly into a model in train mode and the other way round, and loading LoRA
  weights alone into a merged layer merges the new ΔW (loralib keeps, then later subtracts, a stale
  one). A base-only state dict is read as unmerged. A full state dict without the record (loralib's)
  is read as loralib reads it: as holding the layer's current state;
- ``Conv1d``/``Conv3d`` work for ``kernel_size > 1`` (loralib 0.1.2 fails there on a reshape; shapes
  are unchanged wherever loralib works). The conv layers follow loralib 0.1.2 as published on PyPI;
  microsoft/LoRA's later master also registers ``weight``/``bias`` on the wrapper, so its conv state
  dicts have two more keys;
- an extra keyword ``init='gaussian'`` (A and B ~ N(0, 0.02)); ``merge(model)`` / ``unmerge(model)``;
- an unknown ``bias`` mode raises ``ValueError`` (loralib: ``NotImplementedError``); so do an
  ``enable_lora`` that does not divide ``out_features`` and a tuple ``kernel_size`` (loralib: assert);
- merging changes the frozen weight through autograd's view of it, so ``eval()``/``train()`` between
  a forward and its backward raises torch's in-place error (loralib edits ``.data`` and silently
  back-propagates through the changed weight).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "LoRALayer", "Embedding", "Linear", "MergedLinear", "ConvLoRA", "Conv1d", "Conv2d", "Conv3d",
    "mark_only_lora_as_trainable", "lora_state_dict", "merge", "unmerge",
]

INITS = ("default", "gaussian")
BIAS_MODES = ("none", "all", "lora_only")
GAUSSIAN_STD = 0.02


class LoRALayer:
    """Mixin holding the LoRA hyper-parameters and the merge bookkeeping shared by every layer.

    Subclasses list it before their torch layer (``class Linear(LoRALayer, nn.Linear)``) so that its
    ``train`` wins, call ``LoRALayer.__init__`` after the torch layer's, and define ``delta_weight``
    (and ``merge_target_name`` when the frozen weight is not ``self.weight``).
    """

    def __init__(self, r: int, lora_alpha: int, lora_dropout: float, merge_weights: bool,
                 init: str = "default"):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.r = r
        self.lora_alpha = lora_alpha
        self.lora_init = init
        self.lora_dropout = nn.Dropout(p=lora_dropout) if lora_dropout > 0.0 else nn.Identity()
        self.merged = False
        self.merge_weights = merge_weights
        self._merge_states_at_load = None
        if isinstance(self, nn.Module):  # loralib lets the mixin sit on anything
            # Recent torch has public names for these hooks; the underscored ones serve older releases.
            (getattr(self, "register_state_dict_post_hook", None) or self._register_state_dict_hook)(
                _record_merge_state_hook)
            (getattr(self, "register_load_state_dict_pre_hook", None)
             or partial(self._register_load_state_dict_pre_hook, with_module=True))(_before_load_hook)
            self.register_load_state_dict_post_hook(_after_load_hook)

    @property
    def has_lora(self) -> bool:
        return "lora_A" in self._parameters

    merge_target_name = "weight"  # the frozen parameter that ΔW is added to

    def merge_target(self) -> nn.Parameter:
        return self.get_parameter(self.merge_target_name)

    def delta_weight(self) -> torch.Tensor:
        """scaling * B @ A, laid out like ``merge_target()``."""
        raise NotImplementedError

    def _add_lora_weights(self, a_shape: tuple[int, int], b_shape: tuple[int, int]) -> None:
        """Create zero A and B (the dtype/device of the frozen weight), set the scaling, freeze that weight."""
        target = self.merge_target()
        self.lora_A = nn.Parameter(target.new_zeros(a_shape))
        self.lora_B = nn.Parameter(target.new_zeros(b_shape))
        self.scaling = self.lora_alpha / self.r
        target.requires_grad = False

    def _init_lora(self, default_a, default_b) -> None:
        if not self.has_lora:
            return
        if getattr(self, "lora_init", "default") == "gaussian":
            nn.init.normal_(self.lora_A, std=GAUSSIAN_STD)
            nn.init.normal_(self.lora_B, std=GAUSSIAN_STD)
        else:
            default_a(self.lora_A)
            default_b(self.lora_B)

    @torch.no_grad()
    def merge(self) -> None:
        """Add ΔW into the frozen weight (no-op if already merged or without LoRA weights)."""
        if not self.merged:
            if self.has_lora:
                target = self.merge_target()
                target += self.delta_weight().to(target.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract ΔW from the frozen weight (no-op if not merged)."""
        if self.merged:
            if self.has_lora:
                target = self.merge_target()
                target -= self.delta_weight().to(target.dtype)
            self.merged = False

    def train(self, mode: bool = True):
        nn.Module.train(self, mode)
        if self.merge_weights and mode:
            self.unmerge()
        elif self.merge_weights:
            self.merge()
        return self


MERGED_KEY = "lora_merged"  # in a state dict's per-module metadata: the weight saved holds ΔW


def _manages_merge(module) -> bool:
    # Layers written the loralib way (their own train() and merge code, no delta_weight) are left alone.
    return module.has_lora and type(module).delta_weight is not LoRALayer.delta_weight


def _record_merge_state_hook(module, state_dict, prefix, local_metadata):
    # The weights are saved as they are (merged after eval(), as in loralib), and the dict says which.
    if _manages_merge(module):
        local_metadata[MERGED_KEY] = bool(module.merged)


def _before_load_hook(module, state_dict, prefix, local_metadata, *args):
    if not _manages_merge(module):
        return
    has_weight = prefix + module.merge_target_name in state_dict
    if not has_weight and not any(k.startswith(prefix + "lora_") for k in state_dict):
        return  # nothing of this layer is loaded (a partial strict=False load): leave it exactly as it is
    was_merged = module.merged
    if not has_weight:
        module.unmerge()  # LoRA weights only: take the current ΔW out now, merge the new one afterwards
        saved_merged = False
    elif MERGED_KEY in local_metadata:
        saved_merged = bool(local_metadata[MERGED_KEY])
    elif prefix + "lora_A" in state_dict:
        saved_merged = was_merged  # a full loralib state dict: read as loralib reads it
    else:
        saved_merged = False  # base weights only (a pretrained checkpoint): unmerged
    assigned = has_weight and bool(local_metadata.get("assign_to_params_buffers"))
    module._merge_states_at_load = (was_merged, saved_merged, assigned)


def _after_load_hook(module, incompatible_keys):
    states, module._merge_states_at_load = module._merge_states_at_load, None
    if states is None:
        return
    was_merged, saved_merged, assigned = states
    module.merged = saved_merged
    if was_merged != saved_merged:
        if assigned:  # load_state_dict(assign=True): the weight is the caller's tensor; never change it
            target = module.merge_target()
            target.data = target.data.clone()
        module.merge() if was_merged else module.unmerge()


class Embedding(LoRALayer, nn.Embedding):
    """nn.Embedding with a LoRA update (A: (r, num_embeddings), B: (embedding_dim, r))."""

    def __init__(self, num_embeddings: int, embedding_dim: int, r: int = 0, lora_alpha: int = 1,
                 merge_weights: bool = True, init: str = "default", **kwargs):
        nn.Embedding.__init__(self, num_embeddings, embedding_dim, **kwargs)
        LoRALayer.__init__(self, r=r, lora_alpha=lora_alpha, lora_dropout=0.0,
                           merge_weights=merge_weights, init=init)
        if r > 0:
            self._add_lora_weights((r, num_embeddings), (embedding_dim, r))
        self.reset_parameters()

    def reset_parameters(self):
        nn.Embedding.reset_parameters(self)
        # loralib's embedding starts from A = 0 and B ~ N(0, 1).
        self._init_lora(nn.init.zeros_, nn.init.normal_)

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A).transpose(0, 1) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = nn.Embedding.forward(self, x)
        if self.has_lora and not self.merged:
            after_A = F.embedding(x, self.lora_A.transpose(0, 1), self.padding_idx, self.max_norm,
                                  self.norm_type, self.scale_grad_by_freq, self.sparse)
            result = result + (after_A @ self.lora_B.transpose(0, 1)) * self.scaling
        return result


def _kaiming(t: torch.Tensor) -> None:
    nn.init.kaiming_uniform_(t, a=math.sqrt(5))


class _LinearLoRA(LoRALayer, nn.Linear):
    """What Linear and MergedLinear share (a private base: MergedLinear is not a Linear, as in loralib)."""

    def reset_parameters(self):
        nn.Linear.reset_parameters(self)
        self._init_lora(_kaiming, nn.init.zeros_)

    def _t(self, w: torch.Tensor) -> torch.Tensor:
        return w.transpose(0, 1) if self.fan_in_fan_out else w

    def _update_B(self) -> torch.Tensor:
        """B laid out so that ``(x @ A^T) @ B^T`` is the update in the output's layout."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.has_lora or self.merged:
            return F.linear(x, self._t(self.weight), bias=self.bias)
        # Low-rank path on activations, O(tokens * r * (in + out)): ΔW (out, in) is never built (#109).
        # Two skinny matmuls give the update (bias included); one addmm adds it in the frozen matmul's
        # epilogue instead of a separate pass over the output.
        after_A = F.linear(self.lora_dropout(x), self.lora_A)
        low = F.linear(after_A, self._update_B() * self.scaling, self.bias)
        out = torch.addmm(low.reshape(-1, low.size(-1)), x.reshape(-1, x.size(-1)), self._t(self.weight).t())
        return out.view(*x.shape[:-1], out.size(-1))


class Linear(_LinearLoRA):
    """nn.Linear with a LoRA update; ``fan_in_fan_out=True`` stores weight as (in, out) like GPT-2's Conv1D."""

    def __init__(self, in_features: int, out_features: int, r: int = 0, lora_alpha: int = 1,
                 lora_dropout: float = 0.0, fan_in_fan_out: bool = False, merge_weights: bool = True,
                 init: str = "default", **kwargs):
        nn.Linear.__init__(self, in_features, out_features, **kwargs)
        LoRALayer.__init__(self, r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                           merge_weights=merge_weights, init=init)
        self.fan_in_fan_out = fan_in_fan_out
        if r > 0:
            self._add_lora_weights((r, in_features), (out_features, r))
        self.reset_parameters()
        if fan_in_fan_out:
            self.weight.data = self.weight.data.transpose(0, 1).contiguous()

    def delta_weight(self) -> torch.Tensor:
        return self._t(self.lora_B @ self.lora_A) * self.scaling

    def _update_B(self) -> torch.Tensor:
        return self.lora_B


def _enabled_slices(enable_lora: Sequence, r: int) -> list[bool]:
    """Which slices have LoRA, read as loralib reads ``enable_lora`` (it indexes the slices with it when
    r > 0 and any is set): booleans are a mask, integers are slice numbers, so ``[1, 0, 1]`` means slices 0
    and 1. numpy and torch values are taken as their Python equivalents."""
    values = enable_lora.tolist() if hasattr(enable_lora, "tolist") else [
        e.item() if hasattr(e, "item") else e for e in enable_lora]
    if all(isinstance(e, bool) for e in values) or r == 0 or not any(values):
        return [bool(e) for e in values]
    if not all(isinstance(e, int) for e in values):
        raise ValueError(f"enable_lora must hold booleans (or loralib-style slice numbers), got {values}")
    rows = [False] * len(values)
    for index in values:
        if not -len(rows) <= index < len(rows):
            raise ValueError(f"enable_lora={values}: slice {index} is out of range")
        rows[index] = True
    if sum(rows) != sum(values):  # loralib would size A and B by sum(enable_lora) and fail later
        raise ValueError(f"enable_lora={values}: as slice numbers these enable {sum(rows)} slices, "
                         f"but loralib sizes the LoRA weights for sum(enable_lora)={sum(values)}")
    return rows


class MergedLinear(_LinearLoRA):
    """One linear layer holding ``len(enable_lora)`` equal output slices (e.g. GPT-2's fused q, k, v);
    slice g gets its own rank-r update when ``enable_lora[g]`` is true.

    lora_A: (r * n_enabled, in_features); lora_B: (out_features // len(enable_lora) * n_enabled, r).
    """

    def __init__(self, in_features: int, out_features: int, r: int = 0, lora_alpha: int = 1,
                 lora_dropout: float = 0.0, enable_lora: Sequence[bool] = (False,),
                 fan_in_fan_out: bool = False, merge_weights: bool = True, init: str = "default",
                 **kwargs):
        nn.Linear.__init__(self, in_features, out_features, **kwargs)
        LoRALayer.__init__(self, r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                           merge_weights=merge_weights, init=init)
        if len(enable_lora) == 0 or out_features % len(enable_lora) != 0:
            raise ValueError(f"len(enable_lora)={len(enable_lora)} must divide out_features={out_features}")
        self.enable_lora = _enabled_slices(enable_lora, r)
        self.fan_in_fan_out = fan_in_fan_out
        n_enabled = sum(self.enable_lora)
        if r > 0 and n_enabled > 0:
            slice_size = out_features // len(self.enable_lora)
            self._add_lora_weights((r * n_enabled, in_features), (slice_size * n_enabled, r))
        self.reset_parameters()
        if fan_in_fan_out:
            self.weight.data = self.weight.data.transpose(0, 1).contiguous()

    def _grouped(self):
        """A as (n_enabled, r, in) and B as (n_enabled, slice_size, r)."""
        n = sum(self.enable_lora)
        return self.lora_A.view(n, self.r, -1), self.lora_B.view(n, -1, self.r)

    @property
    def lora_ind(self) -> torch.Tensor:
        """(out_features,) bool: the output rows that have a LoRA update (a plain attribute in loralib)."""
        slice_size = self.out_features // len(self.enable_lora)
        return torch.tensor(self.enable_lora, device=self.weight.device).repeat_interleave(slice_size)

    def zero_pad(self, x: torch.Tensor) -> torch.Tensor:
        """Scatter rows for the enabled slices into a zero tensor with out_features rows."""
        result = x.new_zeros((len(self.lora_ind), *x.shape[1:]))
        result[self.lora_ind] = x
        return result

    def merge_AB(self) -> torch.Tensor:
        """B @ A per enabled slice, zero elsewhere, laid out like ``weight`` (no scaling), as loralib."""
        A, B = self._grouped()
        return self._t(self.zero_pad((B @ A).flatten(0, 1)))

    def delta_weight(self) -> torch.Tensor:
        return self.merge_AB() * self.scaling

    def block_B(self) -> torch.Tensor:
        """(out_features, n_enabled * r): slice g's B in the columns of its A rows, zero elsewhere, so
        ``(x @ A^T) @ block_B^T`` is every slice's update laid out like the output."""
        _, B = self._grouped()
        n, slice_size = len(B), B.size(1)
        pieces, j = [], 0
        for enabled in self.enable_lora:
            if enabled:
                pieces.append(F.pad(B[j], (j * self.r, (n - 1 - j) * self.r)))
                j += 1
            else:
                pieces.append(B.new_zeros(slice_size, n * self.r))
        return torch.cat(pieces)

    _update_B = block_B


class ConvLoRA(LoRALayer, nn.Module):
    """A conv layer (kept as ``self.conv``) with a LoRA update reshaped to the kernel.

    lora_A: (r * k, in_channels * k), lora_B: (out_channels // groups * k**(d-1), r * k) for a d-dim
    kernel of size k; identical to loralib for Conv2d and for kernel_size=1. As in loralib,
    ``lora_dropout`` is accepted but not applied.
    """

    merge_target_name = "conv.weight"

    def __init__(self, conv_module, in_channels, out_channels, kernel_size, r=0, lora_alpha=1,
                 lora_dropout=0.0, merge_weights=True, init="default", **kwargs):
        nn.Module.__init__(self)
        if not isinstance(kernel_size, int):
            raise ValueError(f"kernel_size must be an int, got {kernel_size!r}")
        self.conv = conv_module(in_channels, out_channels, kernel_size, **kwargs)
        LoRALayer.__init__(self, r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                           merge_weights=merge_weights, init=init)
        if r > 0:
            dims = self.conv.weight.dim() - 2
            out_rows = out_channels // self.conv.groups * kernel_size ** (dims - 1)
            self._add_lora_weights((r * kernel_size, in_channels * kernel_size), (out_rows, r * kernel_size))
        self.reset_parameters()

    def reset_parameters(self):
        self.conv.reset_parameters()
        self._init_lora(_kaiming, nn.init.zeros_)

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A).view(self.conv.weight.shape) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_lora and not self.merged:
            weight = self.conv.weight + self.delta_weight()
            return self.conv._conv_forward(x, weight, self.conv.bias)
        return self.conv(x)


class Conv1d(ConvLoRA):
    def __init__(self, *args, **kwargs):
        super().__init__(nn.Conv1d, *args, **kwargs)


class Conv2d(ConvLoRA):
    def __init__(self, *args, **kwargs):
        super().__init__(nn.Conv2d, *args, **kwargs)


class Conv3d(ConvLoRA):
    def __init__(self, *args, **kwargs):
        super().__init__(nn.Conv3d, *args, **kwargs)


def _check_bias(bias: str) -> None:
    if bias not in BIAS_MODES:
        raise ValueError(f"bias must be one of {', '.join(map(repr, BIAS_MODES))}, got {bias!r}")


def mark_only_lora_as_trainable(model: nn.Module, bias: str = "none") -> None:
    """Freeze every parameter whose name lacks ``lora_``; ``bias`` also unfreezes every bias ('all')
    or the biases of LoRA layers ('lora_only'). Name matching is loralib's (substring)."""
    _check_bias(bias)
    for name, p in model.named_parameters():
        if "lora_" not in name:
            p.requires_grad = False
    if bias == "all":
        for name, p in model.named_parameters():
            if "bias" in name:
                p.requires_grad = True
    elif bias == "lora_only":
        for m in model.modules():
            if isinstance(m, LoRALayer) and getattr(m, "bias", None) is not None:
                m.bias.requires_grad = True


def lora_state_dict(model: nn.Module, bias: str = "none") -> Dict[str, torch.Tensor]:
    """The LoRA entries of ``model.state_dict()`` (plus biases for 'all' / 'lora_only'), as loralib."""
    _check_bias(bias)
    full = model.state_dict()
    if bias == "none":
        return {k: v for k, v in full.items() if "lora_" in k}
    if bias == "all":
        return {k: v for k, v in full.items() if "lora_" in k or "bias" in k}
    picked = {}
    for k, v in full.items():
        if "lora_" in k:
            picked[k] = v
            bias_name = k.split("lora_")[0] + "bias"
            if bias_name in full:
                picked[bias_name] = full[bias_name]
    return picked


def merge(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer of ``model`` in place, whatever its train/eval mode (idempotent)."""
    for m in model.modules():
        if isinstance(m, LoRALayer):
            m.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Undo ``merge``: every LoRA layer computes ``W x + scaling * B A x`` again (idempotent)."""
    for m in model.modules():
        if isinstance(m, LoRALayer):
            m.unmerge()
    return model
