"""GPT2LMModel: configs and cards, KV cache, padded batches, and every load_weight route (HF, upstream,
LoRA-only) including its errors, on a random HF GPT-2 (conftest's hf_dir). Against HF transformers' logits and
upstream microsoft/LoRA src/model.py: tests/parity/test_model_hf.py, tests/parity/test_model_upstream.py."""

from __future__ import annotations

import json

import pytest
import torch

from gpt2_lora import lora
from gpt2_lora.checkpoint import load_checkpoint_file
from gpt2_lora.errors import UserError
from gpt2_lora.model import CARDS, GPT2Config, GPT2LMModel, KVCache, attention_mask
from helpers import REAL_VOCAB_TINY, ids as random_ids, randomize_lora


@pytest.fixture(scope="module")
def ids():
    return random_ids(50257, (3, 24), seed=1)


def loaded_model(hf_dir, **overrides) -> GPT2LMModel:
    path, _ = hf_dir
    model = GPT2LMModel(GPT2Config.from_hf_config(path / "config.json", **overrides)).eval()
    model.load_weight(load_checkpoint_file(path))
    return model


def test_cards_have_the_paper_sizes():
    sizes = {name: (c.n_embd, c.n_layer, c.n_head) for name in CARDS for c in [GPT2Config.card(name)]}
    assert sizes == {"gpt2.sm": (768, 12, 12), "gpt2.md": (1024, 24, 16), "gpt2.lg": (1280, 36, 20)}
    config = GPT2Config.resolve("gpt2.md", lora_attn_dim=4, lora_attn_alpha=32)
    assert (config.lora_attn_dim, config.lora_attn_alpha, config.vocab_size, config.n_ctx) == (4, 32, 50257, 1024)
    with pytest.raises(UserError, match="gpt2.sm, gpt2.md, gpt2.lg"):
        GPT2Config.resolve("gpt2.xl")
    with pytest.raises(UserError, match="lora_rank"):
        GPT2Config.card("gpt2.sm", lora_rank=4)


def test_from_hf_config(hf_dir, tmp_path):
    path, hf = hf_dir
    config = GPT2Config.from_hf_config(path / "config.json", lora_attn_dim=2)
    assert (config.n_embd, config.n_layer, config.n_head, config.n_positions, config.vocab_size) == (64, 2, 4, 128, 50257)
    assert config.layer_norm_epsilon == hf.config.layer_norm_epsilon and config.lora_attn_dim == 2
    assert GPT2Config.resolve(path) == GPT2Config.from_hf_config(path)  # a directory holding config.json
    bad = tmp_path / "config.json"
    bad.write_text('{"n_embd": 64,\n oops}')
    with pytest.raises(UserError, match=r"config.json:2: not valid JSON"):
        GPT2Config.from_hf_config(bad)
    with pytest.raises(UserError, match="not found"):
        GPT2Config.from_hf_config(tmp_path / "missing.json")
    for field, value in (("n_embd", "32"), ("n_head", 0), ("n_layer", -1), ("vocab_size", 0), ("n_positions", 1.5)):
        bad.write_text(json.dumps({"n_embd": 64, "n_head": 4, field: value}))
        with pytest.raises(UserError, match=rf"config.json: {field} must be a positive integer, got {value!r}"):
            GPT2Config.resolve(bad)


def test_kv_cache_matches_full_forward(hf_dir, ids):
    model = loaded_model(hf_dir)
    with torch.no_grad():
        full = model(ids)
        cache = KVCache(model.config, batch_size=3, max_len=32)
        steps = [model(ids[:, :8], cache=cache), model(ids[:, 8:13], cache=cache)]  # prefill, then a chunk
        steps += [model(ids[:, t:t + 1], cache=cache) for t in range(13, 24)]  # then one token at a time
    assert cache.length == 24
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=0)


def test_left_padded_batch_matches_unpadded_rows(hf_dir):
    """Left padding + explicit mask and positions, through a prefill and cached steps (beam search)."""
    model = loaded_model(hf_dir)
    gen = torch.Generator().manual_seed(2)
    lengths, width, new = [9, 4, 7], 9, 3
    rows = [torch.randint(0, 50257, (n + new,), generator=gen) for n in lengths]
    padded = torch.full((3, width + new), 50256)
    keep = torch.zeros(3, width + new, dtype=torch.bool)
    for b, (row, n) in enumerate(zip(rows, lengths)):
        padded[b, width - n:] = row
        keep[b, width - n:] = True
    positions = (keep.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        cache = KVCache(model.config, batch_size=3, max_len=width + new)
        out = [model(padded[:, :width], positions[:, :width], cache, attention_mask(keep[:, :width], width))]
        for t in range(width, width + new):
            out.append(model(padded[:, t:t + 1], positions[:, t:t + 1], cache, attention_mask(keep[:, :t + 1], 1)))
        out = torch.cat(out, dim=1)
        for b, (row, n) in enumerate(zip(rows, lengths)):
            torch.testing.assert_close(out[b, width - n:], model(row[None])[0], atol=1e-4, rtol=0)
    assert torch.isfinite(out).all()  # padding queries must not produce NaN


def test_kv_cache_reorder_follows_beams(hf_dir, ids):
    model = loaded_model(hf_dir)
    with torch.no_grad():
        cache = KVCache(model.config, batch_size=3, max_len=24)
        model(ids[:, :10], cache=cache)
        index = torch.tensor([2, 2, 0, 1])  # beam search: rows may repeat and the batch may grow
        cache.reorder(index)
        step = model(ids[index, 10:12], cache=cache)
        torch.testing.assert_close(step, model(ids[index, :12])[:, 10:], atol=1e-4, rtol=0)
        cache.reorder(torch.tensor([3, 0, 1, 2]))  # same size: reordered in place
        torch.testing.assert_close(model(ids[index][[3, 0, 1, 2], 12:13], cache=cache),
                                   model(ids[index][[3, 0, 1, 2], :13])[:, 12:], atol=1e-4, rtol=0)


def test_bf16_autocast_runs_with_cache(hf_dir, ids):
    model = loaded_model(hf_dir)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        cache = KVCache(model.config, batch_size=3, max_len=24)
        first = model(ids[:, :20], cache=cache)
        last = model(ids[:, 20:21], cache=cache)
    assert cache.k.dtype == torch.bfloat16 and last.shape == (3, 1, 50257)
    full = model(ids[:, :21]).detach()
    assert (torch.cat([first, last], 1).float() - full).abs().max() < 0.1 * full.abs().max()


def test_upstream_checkpoint_dict_loads(hf_dir, ids):
    source = loaded_model(hf_dir, lora_attn_dim=4)
    randomize_lora(source)
    state = {"module.transformer." + k: v for k, v in source.transformer.state_dict().items()}
    state["module.lm_head.decoder.weight"] = source.transformer.wte.weight  # what upstream saves too
    state["module.transformer.h.0.attn.bias"] = torch.ones(1, 1, 128, 128).tril()
    model = GPT2LMModel(source.config).eval()
    report = model.load_weight({"model_state_dict": state})
    assert report.upstream and report.kind == "base+lora" and not report.unexpected
    assert sorted(report.ignored) == ["module.lm_head.decoder.weight", "module.transformer.h.0.attn.bias"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids), source(ids), atol=0, rtol=0)


def test_lora_only_applies_on_top_of_base(hf_dir, ids):
    trained = loaded_model(hf_dir, lora_attn_dim=4, lora_attn_alpha=8)
    randomize_lora(trained)
    adapter = {"module." + k: v for k, v in lora.lora_state_dict(trained).items()}  # as upstream saves it
    assert adapter and all("lora_" in k for k in adapter)
    model = loaded_model(hf_dir, lora_attn_dim=4, lora_attn_alpha=8)
    with torch.no_grad():
        before = model(ids)
        report = model.load_weight({"model_state_dict": adapter})
        after = model(ids)
    assert report.kind == "lora-only" and len(report.loaded) == 2 * 2 and not report.missing_lora
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, trained(ids), atol=0, rtol=0)


def test_lora_only_without_base_is_an_error():
    model = GPT2LMModel(GPT2Config(**REAL_VOCAB_TINY, lora_attn_dim=4))
    adapter = lora.lora_state_dict(GPT2LMModel(GPT2Config(**REAL_VOCAB_TINY, lora_attn_dim=4)))
    with pytest.raises(UserError, match=r"lacks \d+ base weight.*wte\.weight"):
        model.load_weight({"model_state_dict": adapter})
    assert not model.base_loaded


def test_load_weight_errors(hf_dir):
    path, _ = hf_dir
    state = load_checkpoint_file(path)
    small = GPT2LMModel(GPT2Config(**{**REAL_VOCAB_TINY, "n_positions": 64}))
    with pytest.raises(UserError, match=r"wpe\.weight has shape \(128, 64\).*expects \(64, 64\)"):
        small.load_weight(state)
    plain = loaded_model(hf_dir)
    adapter = lora.lora_state_dict(GPT2LMModel(GPT2Config(**REAL_VOCAB_TINY, lora_attn_dim=2)))
    with pytest.raises(UserError, match="lora_attn_dim=0"):
        plain.load_weight(adapter)
    with pytest.warns(UserWarning, match="unexpected key.*score.weight"):
        report = plain.load_weight({**state, "score.weight": torch.zeros(2)})
    assert report.unexpected == ["score.weight"]
    with pytest.raises(UserError, match="no GPT-2 weights"):
        plain.load_weight({"encoder.weight": torch.zeros(2)})
    with pytest.raises(UserError, match="model_state_dict is a list"):
        plain.load_weight({"model_state_dict": [1, 2]})
    with pytest.raises(UserError, match="wte.weight is a int, not a tensor"):
        plain.load_weight({"wte.weight": 5})


def test_lora_changes_output_and_merge_keeps_it(hf_dir, ids):
    base = loaded_model(hf_dir)
    model = loaded_model(hf_dir, lora_attn_dim=4, lora_attn_alpha=16, lora_init="gaussian")
    with torch.no_grad():
        assert (model(ids) - base(ids)).abs().max() > 1e-3  # gaussian init: B is not zero
        unmerged = model(ids)
        lora.merge(model)
        torch.testing.assert_close(model(ids), unmerged, atol=1e-5, rtol=0)
    names = dict(model.named_parameters())
    assert names["transformer.h.0.attn.c_attn.lora_A"].shape == (8, 64)
    assert names["transformer.h.0.attn.c_attn.lora_B"].shape == (128, 4)


def test_load_weight_reads_a_merged_state_dict_once(hf_dir, ids, tmp_path):
    """A full state dict saved from a merged model (W + ΔW, and the record saying so), through torch.save,
    upstream's {'model_state_dict'} wrapper with 'module.' names, into unmerged and merged models."""
    model = loaded_model(hf_dir, lora_attn_dim=4, lora_attn_alpha=16, lora_init="gaussian")
    with torch.no_grad():
        expected = model(ids)
    lora.merge(model)
    state = model.state_dict()
    torch.save(state, tmp_path / "merged.pt")
    wrapped = type(state)(("module." + k, v) for k, v in state.items())
    wrapped._metadata = type(state._metadata)(("module." + k if k else "module", v) for k, v in state._metadata.items())
    for source in (torch.load(tmp_path / "merged.pt", weights_only=True), {"model_state_dict": wrapped}):
        for merge_first in (False, True):
            fresh = GPT2LMModel(GPT2Config.from_hf_config(hf_dir[0], lora_attn_dim=4, lora_attn_alpha=16))
            if merge_first:
                lora.merge(fresh)
            fresh.load_weight(source)
            with torch.no_grad():
                torch.testing.assert_close(fresh(ids), expected, atol=1e-5, rtol=0)


def test_padded_head_gives_the_same_logits():
    """16-bit heads get zero rows up to a multiple of 64 (aligned tensor-core GEMMs); the kept logits are
    the unpadded ones. fp32 heads come back as they are."""
    from gpt2_lora.model import padded_head

    model = GPT2LMModel(GPT2Config(vocab_size=100, n_positions=16, n_embd=32, n_layer=1, n_head=2))
    hidden = torch.randn(3, 5, 32)
    assert padded_head(model.transformer.wte.weight) is model.transformer.wte.weight
    low = model.to(torch.bfloat16)
    head = padded_head(low.transformer.wte.weight)
    assert head.shape == (128, 32) and not head[100:].any() and torch.equal(head[:100], low.transformer.wte.weight)
    got, expected = low.logits(hidden.bfloat16(), head), low.logits(hidden.bfloat16())
    assert got.shape == expected.shape == (3, 5, 100)
    assert torch.allclose(got.float(), expected.float(), atol=1e-2)
