"""Upstream's AdamW and learning-rate schedules (microsoft/LoRA ``src/optimizer.py``), same maths.

Upstream's AdamW is the HF-BERT variant, not ``torch.optim.AdamW``:

* epsilon is added to ``sqrt(v)`` *before* bias correction, and the correction goes into the step
  size: ``p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`` (only with ``correct_bias``;
  without it the step is ``lr * m / (sqrt(v) + eps)``);
* weight decay comes *after* the Adam update, on the updated weight: ``p += -lr * wd * p``.

torch's AdamW decays first and puts eps after the corrected ``sqrt(v)``, so it differs in both places;
this one matches upstream bit for bit (``tests/test_optim.py``) while updating all parameters with a
few ``torch._foreach_*`` calls instead of a Python loop of small kernels.

Schedules are pure functions of the number of optimizer steps already taken, ``i``: the lr of step
``i + 1``. They reproduce upstream's ``LambdaLR``/scheduler objects, including their quirks (the very
first step runs with lr 0 under ``linear``/``constant``/``cosine`` with warmup). Upstream steps its
scheduler once per *micro*-batch; we step once per *optimizer* step, and ``--max_step``,
``--warmup_step`` and the intervals count optimizer steps. With ``--grad_acc 1`` (the paper's recipe)
both are the same; with gradient accumulation ours is the usual convention.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

SCHEDULERS = ("cosine", "inv_sqrt", "dev_perf", "constant", "linear", "cycle")
NO_DECAY = ("bias", "layer_norm.weight")  # upstream's substrings (its LayerNorms are ln_*, so only biases match)


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay, exactly as upstream ``optimizer.AdamW``."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-6,
                 weight_decay: float = 0.0, correct_bias: bool = True):
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        for k, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"betas[{k}] must be in [0, 1), got {beta}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      correct_bias=correct_bias))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # Parameters without a gradient are skipped (upstream: frozen weights); params are grouped
            # by their step count so each group shares one bias correction.
            by_step: dict[int, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                by_step.setdefault(state["step"], []).append(p)
            for step, params in by_step.items():
                self._update(group, step, params)
        return loss

    def _update(self, group: dict, step: int, params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        grads = [p.grad for p in params]
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        step_size = adam_step_size(group, step, lr)
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denoms, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denoms, value=-step_size)
        if wd > 0.0:
            torch._foreach_add_(params, params, alpha=-lr * wd)


def adam_step_size(group: dict, step: int, lr: float) -> float:
    """The update's multiplier at (1-based) ``step``: ``lr``, times upstream's bias correction
    ``sqrt(1 - beta2^step) / (1 - beta1^step)`` when the group has ``correct_bias``."""
    if not group["correct_bias"]:
        return lr
    beta1, beta2 = group["betas"]
    return lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)


def grouped_parameters(model: nn.Module, no_decay_bias: bool) -> list[dict]:
    """Upstream ``create_grouped_parameters``: one group, or (decayed, no-decay) split by name."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not no_decay_bias:
        return [{"params": [p for _, p in named]}]
    return [
        {"params": [p for n, p in named if not any(nd in n for nd in NO_DECAY)]},
        {"params": [p for n, p in named if any(nd in n for nd in NO_DECAY)], "weight_decay": 0.0},
    ]


class Schedule:
    """lr for optimizer step ``i + 1`` given ``i`` steps already taken, as upstream's schedulers."""

    def __init__(self, name: str, lr: float, warmup_step: int = 0, max_step: int | None = None,
                 i_steps: Iterable[int] = (0,), i_lrs: Iterable[float] = (0.00025,)):
        if name not in SCHEDULERS:
            raise ValueError(f"name must be one of {', '.join(SCHEDULERS)}, got {name!r}")
        if warmup_step < 0:
            raise ValueError(f"warmup_step must be >= 0, got {warmup_step}")
        if name in ("linear", "cosine") and max_step is None:
            raise ValueError(f"the {name} schedule needs max_step")
        self.name, self.lr, self.warmup, self.max_step = name, lr, warmup_step, max_step
        self.i_steps, self.i_lrs = list(i_steps), list(i_lrs)
        if name == "cycle" and (len(self.i_steps) != len(self.i_lrs) or not self.i_steps):
            raise ValueError("i_steps and i_lrs must list the same number of values (at least one)")

    def __call__(self, i: int) -> float:
        name, warmup = self.name, self.warmup
        if name == "linear":  # LambdaLR(get_linear_schedule_with_warmup): base_lr * lambda(i)
            if i < warmup:
                factor = float(i) / float(max(1, warmup))
            else:
                factor = max(0.0, float(self.max_step - i) / float(max(1, self.max_step - warmup)))
            return self.lr * factor
        if name == "constant":
            return self.lr * (float(i) / float(max(1, warmup)) if i < warmup else 1.0)
        if name == "cosine":  # CosineAnnealingWarmupRestarts sets lr = min_lr (0) until its first step
            if i == 0:
                return 0.0
            if i < warmup:
                return self.lr * i / warmup
            s = min(i, self.max_step)
            return self.lr * (0.5 * (1 + math.cos(math.pi * s / self.max_step)))
        if name == "cycle":  # CyclicScheduler starts at i_lrs[0], then interpolates between the points
            if i == 0:
                return self.i_lrs[0]
            for k in range(len(self.i_steps) - 1):
                if self.i_steps[k] <= i < self.i_steps[k + 1]:
                    alpha = (i - self.i_steps[k]) / (self.i_steps[k + 1] - self.i_steps[k] + 1e-6)
                    alpha = min(max(alpha, 0.0), 1.0)
                    return alpha * self.i_lrs[k + 1] + (1.0 - alpha) * self.i_lrs[k]
            return self.i_lrs[-1]
        return self.lr  # inv_sqrt / dev_perf: upstream creates no scheduler, the lr stays constant

    def apply(self, optimizer: torch.optim.Optimizer, i: int) -> float:
        lr = self(i)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
