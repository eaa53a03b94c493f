"""training.optim: upstream's AdamW update (against a hand-written reference of upstream optimizer.AdamW)
and learning-rate schedules, and their own argument checks."""

from __future__ import annotations

import math

import pytest
import torch

from gpt2_lora.training.optim import AdamW, Schedule


def upstream_adamw_reference(params, grads_per_step, lrs, betas, eps, wd, correct_bias):
    """Upstream optimizer.AdamW.step, one parameter at a time, as plain tensor maths."""
    params = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), 1):
        for k, g in enumerate(grads):
            m[k] = m[k] * betas[0] + g * (1 - betas[0])
            v[k] = v[k] * betas[1] + g * g * (1 - betas[1])
            step = lr * math.sqrt(1 - betas[1] ** t) / (1 - betas[0] ** t) if correct_bias else lr
            params[k] = params[k] - step * m[k] / (v[k].sqrt() + eps)
            params[k] = params[k] - lr * wd * params[k]  # decay after the update, on the new weight
    return params


@pytest.mark.parametrize("correct_bias,wd", [(True, 0.01), (False, 0.0), (True, 0.0)])
def test_adamw_matches_upstream_update(correct_bias, wd):
    torch.manual_seed(0)
    start = [torch.randn(4, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(5)]
    lrs = [0.0, 0.01, 0.02, 0.015, 0.005]
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = AdamW(params, lr=1.0, betas=(0.9, 0.999), eps=1e-6, weight_decay=wd, correct_bias=correct_bias)
    for g, lr in zip(grads, lrs):
        for p, gk in zip(params, g):
            p.grad = gk.clone()
        opt.param_groups[0]["lr"] = lr
        opt.step()
    expected = upstream_adamw_reference(start, grads, lrs, (0.9, 0.999), 1e-6, wd, correct_bias)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-12, atol=1e-14)


def test_schedules():
    linear = Schedule("linear", 1.0, warmup_step=2, max_step=6)
    assert [linear(i) for i in range(8)] == [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert [Schedule("constant", 2.0, warmup_step=4)(i) for i in (0, 1, 4, 9)] == [0.0, 0.5, 2.0, 2.0]
    cosine = Schedule("cosine", 1.0, warmup_step=2, max_step=10)
    assert [cosine(i) for i in (0, 1, 2, 5, 10, 12)] == pytest.approx([0.0, 0.5, 0.9045085, 0.5, 0.0, 0.0])
    assert Schedule("inv_sqrt", 0.3)(100) == 0.3  # upstream builds no scheduler for it
    cycle = Schedule("cycle", 1.0, i_steps=[0, 4, 8], i_lrs=[0.1, 0.5, 0.3])
    assert [cycle(i) for i in (0, 2, 4, 6, 9)] == pytest.approx([0.1, 0.3, 0.5, 0.4, 0.3], rel=1e-5)


def test_bad_arguments_are_value_errors_in_their_own_names():
    """training.config reports them in flag names (tests/test_train_config.py)."""
    params = [torch.nn.Parameter(torch.zeros(2))]
    for kwargs, message in ((dict(lr=-1.0), "lr must be >= 0"), (dict(betas=(1.0, 0.9)), r"betas\[0\] must be in"),
                            (dict(betas=(0.9, -0.5)), r"betas\[1\] must be in"), (dict(eps=-1e-8), "eps must be >= 0")):
        with pytest.raises(ValueError, match=message):
            AdamW(params, **kwargs)
    for args, kwargs, message in ((("warm", 1.0), {}, "name must be one of"),
                                  (("linear", 1.0, -1, 5), {}, "warmup_step must be >= 0"),
                                  (("cosine", 1.0), {}, "the cosine schedule needs max_step"),
                                  (("cycle", 1.0), dict(i_steps=[0, 4], i_lrs=[0.1]), "i_steps and i_lrs")):
        with pytest.raises(ValueError, match=message):
            Schedule(*args, **kwargs)
