"""training.step: upstream's loss at the completion positions (against a hand-written reference of
upstream GPT2LMModel.forward), packed rows, the variable-length attention path, bf16 paths, the
validation loss, and the steppers' own argument checks. A tiny GPT-2 (vocab 128) on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gpt2_lora import lora
from gpt2_lora.training.batching import Layout, collate, collate_packed
from gpt2_lora.training.sampling import pack_rows
from gpt2_lora.training.step import LossModel, Stepper, autocast, batch_args, evaluate, store_frozen_weights
from helpers import TINY, copy_task, tiny_model


def reference_loss(model, examples, seq_len, label_smooth):
    """Upstream GPT2LMModel.forward loss, written out: full (B, seq_len) logits of upstream's padded
    tensors, per-token (1-eps)*NLL + eps*mean(-log p) (eps > 0.0001), masked sum / (mask sum + 1e-4)."""
    layout = Layout(examples, seq_len)
    inp, tgt, msk = (torch.from_numpy(__import__("numpy").stack(x)) for x in
                     zip(*(layout.dense(i) for i in range(len(examples)))))
    logp = F.log_softmax(model(inp).double(), dim=-1)
    nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    loss = (1 - label_smooth) * nll + label_smooth * (-logp.mean(-1)) if label_smooth > 0.0001 else nll
    return float((loss * msk).sum().detach() / (msk.sum() + 0.0001))


@pytest.mark.parametrize("label_smooth", [0.0, 0.1])
def test_loss_equals_upstream_formula(label_smooth):
    model = tiny_model().eval()
    examples = copy_task(6, seed=5)
    layout = Layout(examples, 32)
    batch = collate(layout, list(range(6)), pad_multiple=8, select_multiple=8)
    with torch.no_grad():
        ours = float(LossModel(model, label_smooth)(batch.input_ids, batch.index, batch.target, batch.weight))
    assert ours == pytest.approx(reference_loss(model, examples, 32, label_smooth), rel=1e-6)


def test_packed_loss_and_gradients_equal_dynamic():
    """Several examples per row, block-diagonal attention, positions from 0: the same function."""
    model = tiny_model()
    examples = copy_task(9, seed=6)
    layout = Layout(examples, 32)
    rows = pack_rows(range(9), layout.n, 24)
    assert len(rows) < 9  # examples really share rows
    packed = collate_packed(layout, rows, 24, len(rows) + 1, select_multiple=16)  # one empty row too
    dynamic = collate(layout, list(range(9)), pad_multiple=8)
    loss_model = LossModel(model, 0.1)
    assert_same_loss_and_gradients(model, lambda: loss_model(*batch_args(packed)),
                                   lambda: loss_model(*batch_args(dynamic)))


def assert_same_loss_and_gradients(model, first, second):
    """``first()`` and ``second()`` (losses of ``model``) agree in value and trainable gradients."""
    results = []
    for loss_fn in (first, second):
        model.zero_grad()
        loss = loss_fn()
        loss.backward()
        results.append((float(loss.detach()), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def reference_varlen_flash(q, k, v, cu_q, cu_k, max_q, max_k, dropout, causal, debug):
    """A plain stand-in for aten._flash_attention_forward(varlen): causal SDPA segment by segment."""
    assert cu_q is cu_k and dropout == 0.0 and causal and not debug and q.dim() == 3
    out = torch.zeros_like(q)
    bounds = cu_q.tolist()
    for start, end in zip(bounds, bounds[1:]):
        if end > start:  # zero-length segments pad cu_seqlens to a fixed size
            assert end - start <= max_q
            seg = [t[start:end].transpose(0, 1) for t in (q, k, v)]  # (heads, n, head_dim)
            out[start:end] = F.scaled_dot_product_attention(*seg, is_causal=True).transpose(0, 1)
    return out, None, None, None, None


def test_packed_segments_path_equals_mask_path(monkeypatch):
    """The variable-length attention path (model.Segments: (B*T, heads, head_dim) views, cu_seqlens
    padded with zero-length segments) computes what the dense block-diagonal mask computes; the
    flash kernel itself is checked against the mask on CUDA in test_gpu.py."""
    from gpt2_lora import model as model_module
    monkeypatch.setattr(model_module, "FLASH_VARLEN", reference_varlen_flash)
    model = tiny_model()
    layout = Layout(copy_task(9, seed=6), 32)
    rows = pack_rows(range(9), layout.n, 24)
    packed = collate_packed(layout, rows, 24, len(rows) + 1, 16, max_segments=4 * (len(rows) + 1))
    assert int((packed.cu_seqlens[1:] == packed.cu_seqlens[:-1]).sum()) > 0  # zero-length segments present
    assert_same_loss_and_gradients(model, lambda: LossModel(model, 0.1, varlen=True)(*batch_args(packed)),
                                   lambda: LossModel(model, 0.1, varlen=False)(*batch_args(packed)))


def test_bf16_residual_stream_is_close_and_is_bf16():
    """--residual bf16 rounds the residual stream to bf16 (the blocks' outputs come out bf16); the
    loss stays within bf16 tolerance of the fp32 stream."""
    model = tiny_model().eval()
    batch = collate(Layout(copy_task(6, seed=5), 32), list(range(6)), pad_multiple=8)
    lora.mark_only_lora_as_trainable(model)
    store_frozen_weights(model, "bf16")
    seen = []
    model.transformer.h[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad(), autocast(torch.device("cpu"), "bf16"):
        losses = [float(LossModel(model, 0.1, "bf16", residual)(*batch_args(batch))) for residual in ("fp32", "bf16")]
    assert seen == [torch.float32, torch.bfloat16]
    assert losses[1] == pytest.approx(losses[0], rel=2e-2)


def test_bf16_loss_close_to_fp32():
    model = tiny_model().eval()
    batch = collate(Layout(copy_task(6, seed=5), 32), list(range(6)), pad_multiple=8)
    args = (batch.input_ids, batch.index, batch.target, batch.weight)
    with torch.no_grad():
        fp32 = float(LossModel(model, 0.1)(*args))
        lora.mark_only_lora_as_trainable(model)
        assert store_frozen_weights(model, "bf16") == 4 * TINY["n_layer"]  # c_attn, c_proj, c_fc, mlp.c_proj
        with autocast(torch.device("cpu"), "bf16"):
            bf16 = float(LossModel(model, 0.1, "bf16")(*args))
    assert bf16 == pytest.approx(fp32, rel=2e-2)
    assert bf16 != fp32


def test_validation_loss_is_upstreams_mean_of_batch_means():
    model = tiny_model().eval()
    examples = copy_task(10, seed=2)
    layout = Layout(examples, 32)
    groups = [[0, 9, 3], [1, 2, 4, 5, 6, 7, 8]]  # any forward grouping gives the same answer
    batches = [collate(layout, g, pad_multiple=8, select_multiple=8) for g in groups]
    got = evaluate(LossModel(model), batches, 10, torch.device("cpu"), "fp32", valid_batch_size=4)
    with torch.no_grad():
        expected = sum(reference_loss(model, examples[i:i + 4], 32, 0.0) for i in range(0, 10, 4)) / 3
    assert got["valid_loss"] == pytest.approx(expected, rel=1e-6)


def test_steppers_refuse_bad_arguments_in_their_own_names():
    model = tiny_model()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.1)
    for kwargs, message in ((dict(grad_acc=0), "grad_acc must be at least 1"), (dict(clip=-1.0), "clip must be >= 0"),
                            (dict(precision="fp8"), "precision must be one of fp32, bf16, fp16")):
        with pytest.raises(ValueError, match=message):
            Stepper(LossModel(model), optimizer, lambda i: 0.1, torch.device("cpu"), **kwargs)
    with pytest.raises(ValueError, match="residual must be one of fp32, bf16"):
        LossModel(model, residual="fp16")
