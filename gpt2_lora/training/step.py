"""One training step: upstream's loss at the masked positions, precision handling, the optimizer step.

Used by ``training.loop`` and by ``scripts/benchmark_train.py``; which precision, residual and
attention a run may use is decided by ``training.config`` (this module takes its parameters as given).

The loss is upstream's ``GPT2LMModel.forward(lm_labels, lm_mask, label_smooth)``:
``sum(mask * loss_t) / (sum(mask) + 0.0001)`` with ``loss_t = (1 - ε)·NLL + ε·mean_v(-log p_v)`` when
``ε > 0.0001`` (else plain NLL), per micro-batch. Positions outside the mask contribute exactly zero to
that sum and its gradient, so the LM head and the softmax run only on the masked positions (gathered
first); that is the same function with ~3x less head work for E2E.

Precision (``--precision``): ``fp32`` is upstream's. ``bf16``/``fp16`` run under autocast; with LoRA
the frozen matmul weights are stored in that dtype once (autocast would re-cast them every step,
since it caches casts only of trainable leaves) while LoRA weights, their gradients and the optimizer
state stay fp32; embeddings, LayerNorms and biases stay fp32 too, so the residual stream is fp32 as in
ordinary autocast. ``fp16`` adds a gradient scaler. ``--residual bf16`` (with ``--precision bf16``) keeps
the residual stream itself in bf16, as a model loaded in bf16 would: half the memory traffic of the
LayerNorm/residual kernels, at the cost of bf16 rounding of the stream (a numerics change, opt-in).

Packed batches attend through a dense block-diagonal causal mask over each row. With
``--packed_attention varlen`` (CUDA, fp16/bf16) they use the variable-length flash kernel instead
(``model.Segments``): each example's own causal attention and nothing else, about half the attention
work at E2E lengths. Both give the same loss and gradients (``tests/test_gpu.py``).
"""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch
from torch import nn

from ..model import Segments, padded_head
from .batching import Batch

PRECISIONS = ("fp32", "bf16", "fp16")
RESIDUALS = ("fp32", "bf16")
PACKED_ATTENTION = ("mask", "varlen")
LOW_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
SMOOTH_THRESHOLD = 0.0001  # upstream applies label smoothing only above this
MASK_EPS = 0.0001          # upstream's denominator: mask.sum() + 0.0001


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=LOW_DTYPES[precision])


def store_frozen_weights(model: nn.Module, precision: str) -> int:
    """Cast frozen matmul weights (2-D, not embeddings) to the autocast dtype; returns how many."""
    if precision == "fp32":
        return 0
    dtype, count = LOW_DTYPES[precision], 0
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for p in model.parameters():
        if not p.requires_grad and p.dim() == 2 and id(p) not in embeddings:
            p.data = p.data.to(dtype)
            count += 1
    return count


class LossModel(nn.Module):
    """``GPT2LMModel`` + upstream's masked LM loss; ``forward`` takes the tensors of a ``Batch``."""

    def __init__(self, model: nn.Module, label_smooth: float = 0.0, precision: str = "fp32",
                 residual: str = "fp32", varlen: bool = False):
        super().__init__()
        if residual not in RESIDUALS:
            raise ValueError(f"residual must be one of {', '.join(RESIDUALS)}, got {residual!r}")
        self.model = model
        self.label_smooth = label_smooth if label_smooth > SMOOTH_THRESHOLD else 0.0
        self.residual_dtype = torch.bfloat16 if residual == "bf16" else None
        self.varlen = varlen  # packed rows on the variable-length flash kernel (CUDA, fp16/bf16)
        wte = model.transformer.wte.weight
        # A frozen tied head is cast to the autocast dtype once, padded for aligned GEMMs (a plain
        # attribute: not a parameter, not in checkpoints, not synchronised by DDP).
        self.head = (padded_head(wte.detach().to(LOW_DTYPES[precision])) if precision != "fp32" and not wte.requires_grad
                     else None)

    def masked_logits(self, input_ids: torch.Tensor, index: torch.Tensor, position_ids=None,
                      segment_ids=None, cu_seqlens=None) -> torch.Tensor:
        """Logits (K, vocab) at the flattened positions ``index`` of ``input_ids`` (B, T); packed rows
        (``segment_ids``, ``cu_seqlens``) attend within their own example only."""
        if segment_ids is None:
            mask = None
        elif self.varlen and cu_seqlens is not None:
            mask = Segments(cu_seqlens, input_ids.size(1))
        else:
            mask = packed_attention_mask(segment_ids)
        hidden = self.model.hidden_states(input_ids, position_ids, attn_mask=mask,
                                          residual_dtype=self.residual_dtype)
        picked = hidden.reshape(-1, hidden.size(-1)).index_select(0, index)
        return self.model.logits(picked, self.head)  # None: the trained (or fp32) wte itself

    def forward(self, input_ids, index, target, weight, position_ids=None, segment_ids=None,
                cu_seqlens=None) -> torch.Tensor:
        logits = self.masked_logits(input_ids, index, position_ids, segment_ids, cu_seqlens)
        losses = smoothed_nll(logits, target, self.label_smooth)
        return (losses * weight).sum() / (weight.sum() + MASK_EPS)

    @torch.no_grad()
    def token_nll(self, input_ids, index, target) -> torch.Tensor:
        """Per-position NLL (no smoothing, as upstream's evaluation)."""
        return smoothed_nll(self.masked_logits(input_ids, index), target, 0.0)


def smoothed_nll(logits: torch.Tensor, target: torch.Tensor, smooth: float) -> torch.Tensor:
    """Per-row ``(1 - ε)·NLL + ε·mean_v(-log p_v)`` in fp32, i.e. ``F.cross_entropy(label_smoothing=ε)``,
    written as ``lse - (1 - ε)·x_target - ε·mean(x)`` so that a compiler fuses it into one pass over the
    (K, vocab) logits each way instead of materialising log-probabilities."""
    x = logits.float()
    lse = torch.logsumexp(x, dim=-1)
    picked = x.gather(1, target[:, None]).squeeze(1)
    if smooth == 0.0:
        return lse - picked
    return lse - (1.0 - smooth) * picked - smooth * x.mean(dim=-1)


def packed_attention_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool: causal, and only within the same segment (padding, 0, sees padding)."""
    T = segment_ids.size(-1)
    causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()
    return ((segment_ids[:, :, None] == segment_ids[:, None, :]) & causal)[:, None]


def mark_entries_dynamic(batch: Batch) -> None:
    """Let a compiled step treat the number of masked entries K as symbolic: one compilation serves
    every K (a packed batch's only varying size) instead of one per distinct K."""
    for t in (batch.index, batch.target, batch.weight):
        torch._dynamo.mark_dynamic(t, 0)


def batch_args(batch: Batch) -> tuple[torch.Tensor, ...]:
    if batch.segment_ids is not None:
        return (batch.input_ids, batch.index, batch.target, batch.weight, batch.position_ids, batch.segment_ids,
                batch.cu_seqlens)
    return batch.input_ids, batch.index, batch.target, batch.weight


class Stepper:
    """Micro-steps (forward + backward, gradient accumulation) and optimizer steps (schedule, scaler,
    clipping, AdamW). Never reads a value back from the device: the loss is accumulated on it."""

    def __init__(self, loss_fn, optimizer: torch.optim.Optimizer, schedule, device: torch.device,
                 precision: str = "fp32", grad_acc: int = 1, clip: float = 0.0,
                 params: Iterable[torch.Tensor] | None = None, ddp: nn.Module | None = None,
                 cudagraphs: bool = False, dynamic_entries: bool = False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if grad_acc < 1:
            raise ValueError(f"grad_acc must be at least 1, got {grad_acc}")
        if not clip >= 0.0:
            raise ValueError(f"clip must be >= 0 (0 = no clipping), got {clip}")
        self.loss_fn, self.optimizer, self.schedule = loss_fn, optimizer, schedule
        self.dynamic_entries = dynamic_entries  # mark K dynamic for a compiled loss_fn
        self.device, self.precision, self.grad_acc, self.clip = device, precision, grad_acc, clip
        self.params = [p for g in optimizer.param_groups for p in g["params"]] if params is None else list(params)
        self.ddp = ddp
        self.cudagraphs = cudagraphs  # torch.compile(mode="reduce-overhead"): mark each new iteration
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.loss_sum = torch.zeros((), device=device)  # sum of micro-batch losses since the last read

    def micro_step(self, batch: Batch, update: bool) -> None:
        """Forward and backward one micro-batch; ``update``: this is the last one before a step."""
        sync = self.ddp is None or update
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        if self.dynamic_entries:
            mark_entries_dynamic(batch)
        with (contextlib.nullcontext() if sync else self.ddp.no_sync()), autocast(self.device, self.precision):
            loss = self.loss_fn(*batch_args(batch))
        self.loss_sum += loss.detach()
        scaled = loss / self.grad_acc if self.grad_acc > 1 else loss
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()

    def optimizer_step(self, step: int) -> float:
        """Take optimizer step ``step + 1`` (``step`` already taken); returns its lr."""
        lr = self.schedule.apply(self.optimizer, step)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return lr

    def read_loss(self) -> float:
        """Sum of the micro-batch losses since the last call (one host sync)."""
        value = float(self.loss_sum)
        self.loss_sum.zero_()
        return value


@torch.no_grad()
def evaluate(loss_model: LossModel, batches: Iterable[Batch], num_examples: int, device: torch.device,
             precision: str, valid_batch_size: int, world_size: int = 1) -> dict[str, float]:
    """Validation loss as upstream reports it: the mean over batches of ``valid_batch_size`` examples
    (in file order) of each batch's masked mean NLL; plus the token-level mean. The forward passes
    use any grouping (e.g. length-sorted, larger batches): losses are summed per example first."""
    was_training = loss_model.training
    loss_model.eval()
    sums = torch.zeros(num_examples, dtype=torch.float64, device=device)
    counts = torch.zeros(num_examples, dtype=torch.float64, device=device)
    for batch in batches:
        batch = batch.to(device)
        with autocast(device, precision):
            nll = loss_model.token_nll(batch.input_ids, batch.index, batch.target)
        rows = torch.as_tensor(batch.examples, device=device)[batch.row]
        sums.index_add_(0, rows, (nll * batch.weight).double())
        counts.index_add_(0, rows, batch.weight.double())
    if world_size > 1:
        torch.distributed.all_reduce(sums)
        torch.distributed.all_reduce(counts)
    loss_model.train(was_training)
    sums, counts = sums.cpu(), counts.cpu()
    groups = torch.arange(num_examples) // valid_batch_size
    n_groups = int(groups[-1]) + 1
    group_sum = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, groups, sums)
    group_count = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, groups, counts)
    batch_mean = float((group_sum / (group_count + MASK_EPS)).mean())
    token_mean = float(sums.sum() / counts.sum().clamp(min=1))
    return {"valid_loss": batch_mean, "valid_token_loss": token_mean}
