"""gpt2_lora.export and the PEFT import, checked through transformers and peft themselves: logits within
1e-4 of ours, on conftest's tiny_base (saved by save_pretrained) and tiny_adapter (a LoRA adapter with a nonzero
B)."""

from __future__ import annotations

import json

import pytest
import torch

from gpt2_lora import export
from gpt2_lora.checkpoint import load_checkpoint_file
from gpt2_lora.errors import UserError
from gpt2_lora.loading import ModelSpec, load_model, resolve_config
from gpt2_lora.training.rundir import RunDir
from helpers import ids, max_diff, our_logits

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
TOL = 1e-4


def _hf(path):
    return transformers.GPT2LMHeadModel.from_pretrained(path).eval()


@torch.no_grad()
def _logits(model, tokens):
    return model(tokens).logits


def test_peft_export_loads_in_peft_with_our_logits(tiny_base, tiny_adapter, tmp_path):
    path, _, ours = tiny_adapter
    assert export.main(["peft", "--init_checkpoint", str(path), "--base_checkpoint", str(tiny_base),
                        "--out", str(tmp_path / "peft")]) == 0
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["target_modules"], config["fan_in_fan_out"]) == \
        (4, 16, ["c_attn"], True)
    assert config["base_model_name_or_path"] == str(tiny_base.resolve())
    assert sorted(p.name for p in (tmp_path / "peft").iterdir()) == ["README.md", "adapter_config.json",
                                                                     "adapter_model.safetensors"]
    tokens = ids()
    peft_model = peft.PeftModel.from_pretrained(_hf(tiny_base), str(tmp_path / "peft")).eval()
    expected = our_logits(ours, tokens)
    assert max_diff(_logits(peft_model, tokens), expected) <= TOL
    assert max_diff(_logits(_hf(tiny_base), tokens), expected) > 100 * TOL  # the control: the adapter matters
    # B holds each slice's B on its own r columns; the k rows and the crossed blocks are zero
    from safetensors.torch import load_file

    b = load_file(tmp_path / "peft" / "adapter_model.safetensors")[
        "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"]
    d, r = 32, 2
    layer = ours.transformer.h[0].attn.c_attn
    b_q, b_v = layer.lora_B[:d], layer.lora_B[d:]
    assert torch.equal(b[:d, :r], b_q) and torch.equal(b[2 * d:, r:], b_v)
    assert not b[d:2 * d].any() and not b[:d, r:].any() and not b[2 * d:, :r].any()


def test_hf_export_loads_in_transformers_with_our_merged_logits(tiny_base, tiny_adapter, tmp_path):
    path, _, ours = tiny_adapter
    assert export.main(["hf", "--init_checkpoint", str(path), "--base_checkpoint", str(tiny_base),
                        "--out", str(tmp_path / "hf")]) == 0
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", "model.safetensors"]
    tokens = ids()
    merged = load_model(ModelSpec(init_checkpoint=str(path), base_checkpoint=str(tiny_base)), say=print)
    assert max_diff(_logits(_hf(tmp_path / "hf"), tokens), our_logits(merged, tokens)) <= TOL
    assert max_diff(_logits(_hf(tiny_base), tokens), our_logits(merged, tokens)) > 100 * TOL


@pytest.mark.parametrize("save_format, name", [("safetensors", "model.safetensors"), ("torch", "pytorch_model.bin")])
def test_train_save_merged_writes_the_same_hf_folder(tiny_base, tiny_adapter, tmp_path, save_format, name):
    ours = tiny_adapter.model
    weights = {n: p.detach().clone() for n, p in ours.named_parameters() if "lora_" in n}
    run = RunDir(tmp_path, save_format)
    written = run.save_merged(ours.config, weights, seed=0, init_checkpoint=str(tiny_base))
    assert written == tmp_path / "merged" / name
    tokens = ids()
    assert max_diff(_logits(_hf(tmp_path / "merged"), tokens), our_logits(ours, tokens)) <= TOL
    # a second save replaces the folder whole
    run.save_merged(ours.config, weights, seed=0, init_checkpoint=str(tiny_base))
    assert sorted(p.name for p in (tmp_path / "merged").iterdir()) == sorted(["config.json", name])


def test_a_base_file_becomes_an_hf_folder(tiny_base, tmp_path):
    # a downloaded base: no config.json
    torch.save(load_checkpoint_file(tiny_base), tmp_path / "gpt2-pytorch_model.bin")
    (tmp_path / "gpt2-config.json").write_text((tiny_base / "config.json").read_text())
    assert export.main(["hf", "--init_checkpoint", str(tmp_path / "gpt2-pytorch_model.bin"), "--model_card",
                        str(tmp_path / "gpt2-config.json"), "--out", str(tmp_path / "gpt2-hf")]) == 0
    tokens = ids()
    assert max_diff(_logits(_hf(tmp_path / "gpt2-hf"), tokens), _logits(_hf(tiny_base), tokens)) <= TOL


def _peft_adapter(tiny_base, out, seed=3, **config):
    model = peft.get_peft_model(_hf(tiny_base), peft.LoraConfig(r=3, lora_alpha=6, **config))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:  # B starts at zero: give it values, so the adapter changes the outputs
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    model.save_pretrained(out)
    return model.eval()


def test_peft_made_adapter_imports_with_peft_logits(tiny_base, tmp_path):
    peft_model = _peft_adapter(tiny_base, tmp_path / "p", target_modules=["c_attn"], fan_in_fan_out=True)
    tokens = ids()
    expected = _logits(peft_model, tokens)
    ours = load_model(ModelSpec(init_checkpoint=str(tmp_path / "p"), base_checkpoint=str(tiny_base)))
    assert max_diff(our_logits(ours, tokens), expected) <= TOL
    assert max_diff(_logits(_hf(tiny_base), tokens), expected) > 100 * TOL
    # the mapping onto MergedLinear: A repeated for q, k, v; B as PEFT's
    layer = load_model(ModelSpec(init_checkpoint=str(tmp_path / "p"), base_checkpoint=str(tiny_base)), merge=False)
    c_attn = layer.transformer.h[1].attn.c_attn
    peft_layer = peft_model.base_model.model.transformer.h[1].attn.c_attn
    assert c_attn.enable_lora == [True, True, True] and c_attn.r == 3 and c_attn.scaling == 2.0
    assert torch.equal(c_attn.lora_A, peft_layer.lora_A["default"].weight.repeat(3, 1))
    assert torch.equal(c_attn.lora_B, peft_layer.lora_B["default"].weight)
    # the folder says r and alpha: a flag may repeat them, not change them
    with pytest.raises(UserError, match=r"--lora_dim 2, but the PEFT adapter .* has --lora_dim 3"):
        resolve_config(ModelSpec(init_checkpoint=str(tmp_path / "p"), base_checkpoint=str(tiny_base), lora_dim=2))


@pytest.mark.parametrize("config, message", [
    (dict(target_modules=["c_attn", "c_fc"]), "targets c_fc; GPT-2 here adapts only attn.c_attn"),
    (dict(target_modules=["c_proj"]), "targets c_proj"),
    (dict(target_modules=["c_attn"], use_rslora=True), "uses use_rslora=True"),
    (dict(target_modules=["c_attn"], bias="lora_only"), "uses bias='lora_only'"),
    (dict(target_modules=["c_attn"], rank_pattern={"h.0.attn.c_attn": 2}), "uses rank_pattern="),
])
def test_peft_adapters_we_cannot_run_are_refused_in_one_line(tiny_base, tmp_path, capsys, config, message):
    _peft_adapter(tiny_base, tmp_path / "p", fan_in_fan_out=True, **config)
    from gpt2_lora import generate

    capsys.readouterr()  # transformers' own progress output
    with pytest.raises(SystemExit) as err:
        generate.main(["--prompt", "x", "--init_checkpoint", str(tmp_path / "p"), "--base_checkpoint", str(tiny_base),
                       "--device", "cpu"])
    text = capsys.readouterr().err
    assert err.value.code == 2 and message in text and text.count("\n") == 1, text


def test_peft_adapter_needs_its_base(tmp_path, tiny_base):
    _peft_adapter(tiny_base, tmp_path / "p", target_modules=["c_attn"], fan_in_fan_out=True)
    with pytest.raises(UserError, match="is a PEFT adapter: pass the model it adapts as --base_checkpoint"):
        resolve_config(ModelSpec(init_checkpoint=str(tmp_path / "p")))
