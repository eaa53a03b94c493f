"""CUDA-only checks (skipped without a GPU): the fast GPU paths compute what the CPU reference computes."""

import pytest
import torch

from gpt2_lora import lora
from gpt2_lora.beam import BeamSettings, generate
from gpt2_lora.model import GPT2Config, GPT2LMModel, KVCache
from gpt2_lora.training.step import LossModel, autocast

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def exact_fp32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def tiny_model(seed=0, sharpen=1.0):
    torch.manual_seed(seed)
    config = GPT2Config(n_embd=128, n_layer=2, n_head=4, n_positions=256, lora_attn_dim=4, lora_attn_alpha=32)
    model = GPT2LMModel(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, lora.MergedLinear):
                module.lora_B.normal_(0, 0.05)
        model.transformer.wte.weight.mul_(sharpen)
    return model


def test_logits_and_cache_on_cuda_match_cpu():
    model = tiny_model()
    ids = torch.randint(0, 50257, (3, 40))
    ref = model(ids)
    gpu = model.cuda()
    out = gpu(ids.cuda()).cpu()
    assert (out - ref).abs().max() < 1e-4
    cache = KVCache(gpu.config, 3, max_len=40)
    steps = [gpu(ids[:, :30].cuda(), cache=cache)[:, -1]]
    for t in range(30, 40):
        steps.append(gpu(ids[:, t:t + 1].cuda(), cache=cache)[:, -1])
    assert (steps[-1].cpu() - ref[:, -1]).abs().max() < 1e-4
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = gpu(ids.cuda()).float().cpu()
    assert ((low - ref).norm() / ref.norm()) < 3e-2


def test_beam_on_cuda_gives_the_cpu_tokens():
    model = tiny_model(seed=1, sharpen=8.0)
    contexts = [list(torch.randint(0, 50257, (n,)).tolist()) for n in (5, 9, 14, 9, 30)]
    contexts.append(contexts[1])  # a duplicate
    settings = BeamSettings(beam=4, eval_len=12, seq_len=64, length_penalty=0.8, no_repeat_ngram_size=2,
                            eos_token_id=(50256, 628))
    cpu = generate(model, contexts, settings, progress=False)
    gpu = generate(model.cuda(), contexts, settings, progress=False)
    assert gpu == cpu


def test_bf16_training_loss_close_to_fp32():
    model = tiny_model(seed=2).cuda().train()
    lora.mark_only_lora_as_trainable(model)
    ids = torch.randint(0, 50257, (4, 33), device="cuda")
    index = torch.arange(10, 4 * 33, 3, device="cuda")
    target = torch.randint(0, 50257, (index.numel(),), device="cuda")
    weight = torch.ones(index.numel(), device="cuda")
    ref = LossModel(model, label_smooth=0.1)(ids, index, target, weight)
    with autocast(torch.device("cuda"), "bf16"):
        low = LossModel(model, label_smooth=0.1, precision="bf16")(ids, index, target, weight)
    assert torch.isfinite(low) and abs(float(low) - float(ref)) / float(ref) < 1e-2
    low.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("precision,clip", [("fp32", 0.0), ("bf16", 0.5)])
def test_graphed_step_follows_the_eager_step(precision, clip):
    from gpt2_lora.training.cudagraph import GraphedStepper
    from gpt2_lora.training.optim import AdamW, Schedule, grouped_parameters
    from gpt2_lora.training.step import Stepper, store_frozen_weights

    def build():
        model = tiny_model(seed=3).cuda().train()
        lora.mark_only_lora_as_trainable(model, bias="lora_only")
        store_frozen_weights(model, precision)
        optimizer = AdamW(grouped_parameters(model, True), lr=1e-3, betas=(0.9, 0.999), eps=1e-6,
                          weight_decay=0.01, correct_bias=True)
        return model, LossModel(model, label_smooth=0.1, precision=precision), optimizer

    schedule = Schedule("linear", 1e-3, 2, 20)
    batches = []
    gen = torch.Generator().manual_seed(0)
    for t, k in [(32, 64), (64, 128), (32, 64), (64, 128), (32, 64), (32, 128)]:
        ids = torch.randint(0, 50257, (4, t), generator=gen)
        index = torch.randperm(4 * t, generator=gen)[:k].sort().values
        target = torch.randint(0, 50257, (k,), generator=gen)
        weight = (torch.rand(k, generator=gen) > 0.1).float()
        batches.append(type("B", (), dict(input_ids=ids.cuda(), index=index.cuda(), target=target.cuda(),
                                          weight=weight.cuda(), segment_ids=None))())
    results = []
    for graphed in (False, True):
        model, loss_model, optimizer = build()
        stepper = (GraphedStepper(loss_model, optimizer, schedule, torch.device("cuda"), precision, 20, clip)
                   if graphed else Stepper(loss_model, optimizer, schedule, torch.device("cuda"), precision, clip=clip))
        for i, b in enumerate(batches):
            stepper.micro_step(b, True)
            stepper.optimizer_step(i)
        results.append(([p.detach().clone() for p in model.parameters() if p.requires_grad], stepper.read_loss()))
    (eager, eager_loss), (graph, graph_loss) = results
    assert abs(eager_loss - graph_loss) < 1e-3 * abs(eager_loss)
    start = [p.detach() for p in build()[0].parameters() if p.requires_grad]
    assert any(not torch.equal(e, s) for e, s in zip(eager, start))  # the steps did move the weights
    for e, g in zip(eager, graph):
        assert torch.allclose(e, g, rtol=1e-3, atol=1e-5), float((e - g).abs().max())


def lora_training_model():
    """tiny_model(seed=3) on the GPU, training only LoRA, without dropout (two layouts must see one function)."""
    model = tiny_model(seed=3).cuda().train()
    for m in model.modules():
        if isinstance(m, lora.MergedLinear):
            m.lora_dropout = torch.nn.Identity()
    lora.mark_only_lora_as_trainable(model)
    return model


def random_examples(n, max_part, seed):
    """n (context, completion) pairs of 3..max_part random GPT-2 ids, each ending in <|endoftext|>."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 50256, (int(c),), generator=gen).tolist() + [50256],
             torch.randint(0, 50256, (int(p),), generator=gen).tolist() + [50256])
            for c, p in torch.randint(3, max_part, (n, 2), generator=gen)]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_packed_loss_on_cuda_equals_dynamic(precision):
    """Packed rows take the masked attention kernel, dynamic ones the causal one: same loss."""
    from gpt2_lora.training.batching import Layout, collate, collate_packed
    from gpt2_lora.training.sampling import pack_rows
    from gpt2_lora.training.step import batch_args
    layout = Layout(random_examples(40, 30, seed=4), 128)
    rows = pack_rows(range(40), layout.n, 128)
    packed = collate_packed(layout, rows, 128, len(rows) + 2, select_multiple=64).to("cuda")
    dynamic = collate(layout, list(range(40)), pad_multiple=8).to("cuda")
    model = tiny_model(seed=3).cuda().train()
    for m in model.modules():  # no dropout: the two batches must see the same function
        if isinstance(m, lora.MergedLinear):
            m.lora_dropout = torch.nn.Identity()
    loss_model = LossModel(model, label_smooth=0.1)
    losses = []
    with torch.no_grad(), autocast(torch.device("cuda"), precision):
        for batch in (packed, dynamic):
            losses.append(float(loss_model(*batch_args(batch))))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5 if precision == "fp32" else 1e-2)


@pytest.mark.parametrize("compiled", [False, True])
def test_packed_varlen_attention_equals_masked_attention(compiled):
    """bf16 packed rows through the variable-length flash kernel (zero-length segments padding
    cu_seqlens) give the loss and LoRA gradients of the dense block-diagonal mask."""
    from gpt2_lora.training.batching import Layout, collate_packed
    from gpt2_lora.training.sampling import pack_rows
    from gpt2_lora.model import FLASH_VARLEN
    from gpt2_lora.training.step import batch_args
    if FLASH_VARLEN is None:
        pytest.skip("this torch has no variable-length flash attention")
    layout = Layout(random_examples(60, 40, seed=5), 128)
    rows = pack_rows(range(60), layout.n, 128)
    packed = collate_packed(layout, rows, 128, len(rows) + 2, 64, max_segments=8 * (len(rows) + 2)).to("cuda")
    assert int(packed.cu_seqlens[-1]) == packed.input_ids.numel()
    results = []
    for varlen in (True, False):
        model = lora_training_model()
        loss_model = LossModel(model, label_smooth=0.1, precision="bf16", varlen=varlen)
        fn = torch.compile(loss_model, dynamic=False) if compiled else loss_model
        with autocast(torch.device("cuda"), "bf16"):
            loss = fn(*batch_args(packed))
        loss.backward()
        grads = [p.grad.float().clone() for p in model.parameters() if p.requires_grad]
        results.append((float(loss), grads))
    (loss_v, grads_v), (loss_m, grads_m) = results
    assert loss_v == pytest.approx(loss_m, rel=2e-3)
    for gv, gm in zip(grads_v, grads_m):
        assert torch.allclose(gv, gm, rtol=5e-2, atol=5e-3 * float(gm.abs().max())), float((gv - gm).abs().max())


def test_padding_free_batch_on_cuda_gives_the_rows_loss_and_gradients():
    """--padding_free on the GPU (bf16): a batch's examples in one row through the variable-length flash
    kernel give the loss and LoRA gradients of the padded rows through the causal kernel."""
    from gpt2_lora.training.batching import Layout, collate, collate_packed
    from gpt2_lora.model import FLASH_VARLEN
    from gpt2_lora.training.step import batch_args
    if FLASH_VARLEN is None:
        pytest.skip("this torch has no variable-length flash attention")
    layout = Layout(random_examples(8, 40, seed=6), 128)
    rows = list(range(8))
    flat = collate_packed(layout, [rows], -(-int(layout.n.sum()) // 32) * 32, 1, 64, max_segments=9).to("cuda")
    padded = collate(layout, rows, pad_multiple=32, select_multiple=64).to("cuda")
    results = []
    for batch, varlen in ((flat, True), (padded, False)):
        model = lora_training_model()
        loss_model = LossModel(model, label_smooth=0.1, precision="bf16", varlen=varlen)
        with autocast(torch.device("cuda"), "bf16"):
            loss = loss_model(*batch_args(batch))
        loss.backward()
        results.append((float(loss), [p.grad.float().clone() for p in model.parameters() if p.requires_grad]))
    (loss_f, grads_f), (loss_p, grads_p) = results
    assert flat.input_ids.numel() < padded.input_ids.numel()  # the padding did go
    assert loss_f == pytest.approx(loss_p, rel=2e-3)
    for gf, gp in zip(grads_f, grads_p):
        assert torch.allclose(gf, gp, rtol=5e-2, atol=5e-3 * float(gp.abs().max())), float((gf - gp).abs().max())


def test_bf16_beam_on_cuda_mostly_gives_the_fp32_tokens():
    """The 16-bit beam path on the GPU (padded LM head, fused log_softmax, the memory-efficient attention
    kernel) on a confident model: most lines equal the fp32 search's."""
    import copy
    model = tiny_model(seed=1, sharpen=8.0).cuda()
    gen = torch.Generator().manual_seed(2)
    contexts = [torch.randint(0, 50257, (int(n),), generator=gen).tolist() for n in torch.randint(4, 30, (24,), generator=gen)]
    settings = BeamSettings(beam=4, eval_len=12, seq_len=64, length_penalty=0.8, no_repeat_ngram_size=2)
    fp32 = generate(model, contexts, settings, progress=False)
    bf16 = generate(copy.deepcopy(model).to(torch.bfloat16), contexts, settings, progress=False)
    same = sum(a == b for a, b in zip(fp32, bf16))
    assert same >= 0.75 * len(contexts), f"{same} of {len(contexts)} lines equal"
