"""The whole training step (forward, backward, upstream's AdamW) replayed as one CUDA graph per shape.

Why: with the paper's batch (8 short E2E examples) GPT-2 M does ~3 ms of GPU work per step but launches
~1,500 kernels, and eager PyTorch spends ~55 ms on the host issuing them. Replaying a captured graph
issues them all at once. Batches are padded to a few shapes (lengths to multiples of 32, masked entries
to multiples of 64: about 20 shapes for E2E), and one graph is captured the first time a shape is seen.

The maths is ``step.Stepper`` + ``optim.AdamW``, arranged so the graph needs no value from the host:
the learning rate and bias correction of every step are precomputed into device tables that a device-side
step counter indexes. The update is written as ``p -= (m / (sqrt(v) + eps)) * step_size`` rather than
``addcdiv``, so it can differ from the eager optimizer in the last bit. Dropout draws from the CUDA
generator through the graph's registered RNG state (a different stream of numbers than eager).

Limits: one process, no gradient accumulation, fp32 or bf16 (no fp16 loss scaling). ``training.config``
chooses this stepper only where it can run (else the eager ``Stepper``, saying why).
"""

from __future__ import annotations

import torch

from .batching import Batch
from .optim import AdamW, Schedule, adam_step_size
from .step import LOW_DTYPES, Stepper, batch_args


class GraphedStepper:
    """Drop-in for ``step.Stepper`` (``micro_step``, ``optimizer_step``, ``read_loss``) on one GPU."""

    scaler = None

    def __init__(self, loss_fn, optimizer: AdamW, schedule: Schedule, device: torch.device, precision: str,
                 max_step: int, clip: float = 0.0):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16 (a graph cannot replay fp16 loss scaling), "
                             f"got {precision!r}")
        if max_step < 1:
            raise ValueError(f"max_step must be at least 1, got {max_step}")
        if not clip >= 0.0:
            raise ValueError(f"clip must be >= 0 (0 = no clipping), got {clip}")
        self.loss_fn, self.optimizer, self.schedule = loss_fn, optimizer, schedule
        self.device, self.precision, self.max_step, self.clip = device, precision, max_step, clip
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.loss_sum = torch.zeros((), device=device)
        self.counter = torch.zeros((), dtype=torch.long, device=device)
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor]]] = {}
        self.pool = None
        self.tables: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.pending: Batch | None = None

    # ------------------------------------------------------------------------------------ set-up
    def _prepare(self, first_step: int) -> None:
        """Static gradients and optimizer state, and the per-step tables, before the first capture."""
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            state = self.optimizer.state[p]
            if not state:
                state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            if state["step"] != first_step:
                raise RuntimeError(f"optimizer state at step {state['step']}, training at {first_step}")
        steps = range(self.max_step)
        lrs = [self.schedule(i) for i in steps]
        self.tables = []
        for group in self.optimizer.param_groups:
            sizes = [adam_step_size(group, i + 1, lr) for i, lr in zip(steps, lrs)]
            decays = [-lr * group["weight_decay"] for lr in lrs]
            self.tables.append((torch.tensor(sizes, dtype=torch.float32, device=self.device),
                                torch.tensor(decays, dtype=torch.float32, device=self.device)))
        self.counter.fill_(first_step)

    def _autocast(self):
        # autocast's weight-cast cache must be off while capturing (the cached casts would be freed)
        enabled = self.precision != "fp32"
        return torch.autocast("cuda", dtype=LOW_DTYPES.get(self.precision, torch.bfloat16), enabled=enabled,
                              cache_enabled=False)

    def _body(self, static: list[torch.Tensor]) -> None:
        """What one replay does: zero grads, forward, backward, clip, AdamW, step counter."""
        grads = [p.grad for p in self.params]
        torch._foreach_zero_(grads)
        with self._autocast():
            loss = self.loss_fn(*static)
        self.loss_sum.add_(loss.detach())
        loss.backward()
        with torch.no_grad():  # the optimizer's in-place updates of leaf parameters
            if self.clip > 0:
                norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
                torch._foreach_mul_(grads, torch.clamp(self.clip / (norm + 1e-6), max=1.0))
            at = self.counter.view(1)  # indexing with a device tensor: no host read inside the graph
            for group, (sizes, decays) in zip(self.optimizer.param_groups, self.tables):
                params = group["params"]
                beta1, beta2 = group["betas"]
                g = [p.grad for p in params]
                m = [self.optimizer.state[p]["exp_avg"] for p in params]
                v = [self.optimizer.state[p]["exp_avg_sq"] for p in params]
                torch._foreach_mul_(m, beta1)
                torch._foreach_add_(m, g, alpha=1.0 - beta1)
                torch._foreach_mul_(v, beta2)
                torch._foreach_addcmul_(v, g, g, value=1.0 - beta2)
                update = torch._foreach_sqrt(v)
                torch._foreach_add_(update, group["eps"])
                update = torch._foreach_div(m, update)
                torch._foreach_mul_(update, sizes.index_select(0, at).squeeze(0))
                torch._foreach_sub_(params, update)
                if group["weight_decay"] > 0.0:  # upstream: after the update, on the updated weight
                    torch._foreach_add_(params, torch._foreach_mul(params, decays.index_select(0, at).squeeze(0)))
            self.counter.add_(1)

    def _graph(self, batch: Batch):
        tensors = batch_args(batch)
        key = tuple(tuple(t.shape) for t in tensors)
        if key not in self.graphs:
            static = [t.clone() for t in tensors]
            # warm-up on a side stream (cuBLAS handles, autograd buffers): forward and backward only, so
            # neither the weights nor the optimizer state move; the graph zeroes the gradients it leaves
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):
                    with self._autocast():
                        loss = self.loss_fn(*static)
                    loss.backward()
                    del loss  # keep no autograd node alive into the capture (its stream would be the side one)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                self._body(static)
            self.pool = graph.pool() if self.pool is None else self.pool
            self.graphs[key] = (graph, static)
        return self.graphs[key]

    # ------------------------------------------------------------------------------ Stepper API
    def micro_step(self, batch: Batch, update: bool) -> None:
        if not update:
            raise RuntimeError("GraphedStepper steps on every micro-batch (no gradient accumulation)")
        self.pending = batch

    def optimizer_step(self, step: int) -> float:
        if step >= self.max_step:
            raise RuntimeError(f"step {step + 1} is past max_step {self.max_step}")
        if self.tables is None:
            self._prepare(step)
        graph, static = self._graph(self.pending)
        for dst, src in zip(static, batch_args(self.pending)):
            dst.copy_(src, non_blocking=True)
        graph.replay()
        self.pending = None
        lr = self.schedule(step)
        for group in self.optimizer.param_groups:  # keep the host-side view right for checkpoints and logs
            group["lr"] = lr
            for p in group["params"]:
                self.optimizer.state[p]["step"] += 1
        return lr

    read_loss = Stepper.read_loss  # the same device-side loss sum, read once
