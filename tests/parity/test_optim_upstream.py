"""training.optim against upstream's own src/optimizer.py (imported from the microsoft/LoRA checkout): AdamW
steps bit for bit, and every schedule upstream builds gives the lr its scheduler object gives, step by step.
(tests/test_optim.py holds both against hand-written references, without the checkout.)"""

from __future__ import annotations

import argparse

import pytest
import torch

from gpt2_lora.training.optim import AdamW, Schedule

pytestmark = [pytest.mark.upstream,
              pytest.mark.filterwarnings("ignore:This overload of addcdiv_ is deprecated:UserWarning")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("correct_bias,wd", [(True, 0.01), (False, 0.0), (True, 0.0)])
def test_adamw_steps_equal_upstreams_bit_for_bit(upstream, dtype, correct_bias, wd):
    theirs_class = upstream("optimizer").AdamW
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(4, 3, generator=gen, dtype=dtype), torch.randn(5, generator=gen, dtype=dtype)]
    grads = [[torch.randn(p.shape, generator=gen, dtype=dtype) for p in start] for _ in range(5)]
    lrs = [0.0, 0.01, 0.02, 0.015, 0.005]
    finals = []
    for optimizer_class in (AdamW, theirs_class):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        optimizer = optimizer_class(params, lr=1.0, betas=(0.9, 0.999), eps=1e-6, weight_decay=wd,
                                    correct_bias=correct_bias)
        for step_grads, lr in zip(grads, lrs):
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            optimizer.param_groups[0]["lr"] = lr
            optimizer.step()
        finals.append([p.detach() for p in params])
    ours, theirs = finals
    assert not torch.equal(ours[0], start[0])  # the steps moved the weights
    for mine, upstream_value in zip(ours, theirs):
        assert torch.equal(mine, upstream_value)


@pytest.mark.parametrize("name, warmup, max_step, i_steps, i_lrs", [
    ("linear", 0, 8, None, None), ("linear", 3, 10, None, None), ("constant", 4, 10, None, None),
    ("cosine", 3, 12, None, None), ("cosine", 0, 6, None, None), ("cycle", 0, None, "0,4,9", "0.1,0.5,0.3"),
])
def test_schedules_equal_upstreams_scheduler_objects(upstream, name, warmup, max_step, i_steps, i_lrs):
    """Upstream's training loop steps its scheduler after every optimizer step; the lr in the optimizer after i
    of them is what Schedule(i) gives (the lr of step i + 1)."""
    lr = 2e-4
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    args = argparse.Namespace(scheduler=name, lr=lr, warmup_step=warmup, max_step=max_step, i_steps=i_steps,
                              i_lrs=i_lrs)
    scheduler = upstream("optimizer").create_optimizer_scheduler(optimizer, args)  # cycle: sets args.max_step
    ours = Schedule(name, lr, warmup, args.max_step, **({} if i_steps is None else
                                                      dict(i_steps=args.i_steps, i_lrs=args.i_lrs)))
    seen = []
    for i in range(args.max_step + 3):
        seen.append(optimizer.param_groups[0]["lr"])
        assert ours(i) == pytest.approx(seen[-1], rel=1e-12, abs=1e-18), i
        optimizer.step()
        scheduler.step()
    assert len(set(seen)) > 3  # the lr did change along the way
