"""The body that gpt2_lora.training.cudagraph captures computes the eager step (checked without capture, on the CPU;
tests/test_gpu.py checks the captured graph itself on CUDA)."""

import pytest
import torch

from gpt2_lora import lora
from gpt2_lora.training.cudagraph import GraphedStepper
from gpt2_lora.training.optim import AdamW, Schedule, grouped_parameters
from gpt2_lora.training.step import LossModel, Stepper
from helpers import tiny_model


def build(seed=0):
    model = tiny_model(r=4, alpha=32, seed=seed, lora_b_std=0.05, vocab_size=97).train()
    lora.mark_only_lora_as_trainable(model, bias="lora_only")
    optimizer = AdamW(grouped_parameters(model, True), lr=1e-2, betas=(0.9, 0.999), eps=1e-6,
                      weight_decay=0.01, correct_bias=True)
    return model, LossModel(model, label_smooth=0.1), optimizer


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_graph_body_equals_the_eager_step(clip):
    schedule = Schedule("linear", 1e-2, 2, 10)
    gen = torch.Generator().manual_seed(1)
    batches = []
    for t, k in [(16, 24), (24, 40), (16, 24), (16, 32)]:
        ids = torch.randint(0, 97, (3, t), generator=gen)
        index = torch.randperm(3 * t, generator=gen)[:k]
        batches.append((ids, index, torch.randint(0, 97, (k,), generator=gen),
                        (torch.rand(k, generator=gen) > 0.2).float()))
    model_e, loss_e, opt_e = build()
    eager = Stepper(loss_e, opt_e, schedule, torch.device("cpu"), "fp32", clip=clip)
    model_g, loss_g, opt_g = build()
    body = GraphedStepper(loss_g, opt_g, schedule, torch.device("cpu"), "fp32", max_step=10, clip=clip)
    body._prepare(0)
    for i, b in enumerate(batches):
        eager.micro_step(type("B", (), dict(input_ids=b[0], index=b[1], target=b[2], weight=b[3], segment_ids=None))(), True)
        eager.optimizer_step(i)
        body._body(list(b))  # what one replay runs
    assert int(body.counter) == len(batches)
    assert abs(eager.read_loss() - body.read_loss()) < 1e-5
    moved = False
    for (name, pe), pg in zip(model_e.named_parameters(), model_g.parameters()):
        if pe.requires_grad:
            assert torch.allclose(pe, pg, rtol=1e-5, atol=1e-6), name  # Adam amplifies last-bit rounding where |g| ~ eps
            moved |= not torch.equal(pe, build()[0].get_parameter(name))
    assert moved


def test_arguments_a_graph_cannot_replay_are_refused_in_its_own_names():
    """Where the graphed step runs (one CUDA device, no accumulation) is training.config's choice
    (tests/test_train_config.py); the stepper itself refuses what it cannot replay."""
    model, loss, optimizer = build()
    schedule = Schedule("linear", 1e-2, 2, 10)
    with pytest.raises(ValueError, match="precision must be fp32 or bf16"):
        GraphedStepper(loss, optimizer, schedule, torch.device("cpu"), "fp16", max_step=10)
    with pytest.raises(ValueError, match="max_step must be at least 1"):
        GraphedStepper(loss, optimizer, schedule, torch.device("cpu"), "fp32", max_step=0)
    stepper = GraphedStepper(loss, optimizer, schedule, torch.device("cpu"), "fp32", max_step=10)
    with pytest.raises(RuntimeError, match="no gradient accumulation"):
        stepper.micro_step(None, update=False)
