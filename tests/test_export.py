"""gpt2_lora.export and the PEFT import, checked through transformers and peft themselves: logits within
1e-4 of ours, on a tiny random GPT-2 saved by save_pretrained and a LoRA adapter with a nonzero B."""

from __future__ import annotations

import json

import pytest
import torch

from gpt2_lora import export
from gpt2_lora.training.rundir import RunDir
from gpt2_lora.checkpoint import load_checkpoint_file
from gpt2_lora.errors import UserError
from gpt2_lora.loading import ModelSpec, load_model, resolve_config
from tiny_models import hf_base, ids, lora_model, our_logits, save_adapter

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
TOL = 1e-4


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return hf_base(tmp_path_factory.mktemp("base") / "hf")


@pytest.fixture(scope="module")
def adapter(base, tmp_path_factory):
    model = lora_model(base, r=2, alpha=8)
    return save_adapter(model, tmp_path_factory.mktemp("adapter") / "model.10.pt", base), model


def _hf(path):
    return transformers.GPT2LMHeadModel.from_pretrained(path).eval()


@torch.no_grad()
def _logits(model, tokens):
    return model(tokens).logits


def _max_diff(a, b) -> float:
    return (a - b).abs().max().item()


def test_peft_export_loads_in_peft_with_our_logits(base, adapter, tmp_path):
    path, ours = adapter
    assert export.main(["peft", "--init_checkpoint", str(path), "--base_checkpoint", str(base),
                        "--out", str(tmp_path / "peft")]) == 0
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["target_modules"], config["fan_in_fan_out"]) == (4, 16, ["c_attn"], True)
    assert config["base_model_name_or_path"] == str(base.resolve())
    assert sorted(p.name for p in (tmp_path / "peft").iterdir()) == ["README.md", "adapter_config.json",
                                                                     "adapter_model.safetensors"]
    tokens = ids()
    peft_model = peft.PeftModel.from_pretrained(_hf(base), str(tmp_path / "peft")).eval()
    expected = our_logits(ours, tokens)
    assert _max_diff(_logits(peft_model, tokens), expected) <= TOL
    assert _max_diff(_logits(_hf(base), tokens), expected) > 100 * TOL  # the control: the adapter matters
    # B holds each slice's B on its own r columns; the k rows and the crossed blocks are zero
    from safetensors.torch import load_file

    b = load_file(tmp_path / "peft" / "adapter_model.safetensors")[
        "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"]
    d, r = 32, 2
    layer = ours.transformer.h[0].attn.c_attn
    b_q, b_v = layer.lora_B[:d], layer.lora_B[d:]
    assert torch.equal(b[:d, :r], b_q) and torch.equal(b[2 * d:, r:], b_v)
    assert not b[d:2 * d].any() and not b[:d, r:].any() and not b[2 * d:, :r].any()


def test_hf_export_loads_in_transformers_with_our_merged_logits(base, adapter, tmp_path):
    path, ours = adapter
    assert export.main(["hf", "--init_checkpoint", str(path), "--base_checkpoint", str(base),
                        "--out", str(tmp_path / "hf")]) == 0
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", "model.safetensors"]
    tokens = ids()
    merged = load_model(ModelSpec(init_checkpoint=str(path), base_checkpoint=str(base)), say=print)
    assert _max_diff(_logits(_hf(tmp_path / "hf"), tokens), our_logits(merged, tokens)) <= TOL
    assert _max_diff(_logits(_hf(base), tokens), our_logits(merged, tokens)) > 100 * TOL


@pytest.mark.parametrize("save_format, name", [("safetensors", "model.safetensors"), ("torch", "pytorch_model.bin")])
def test_train_save_merged_writes_the_same_hf_folder(base, adapter, tmp_path, save_format, name):
    _, ours = adapter
    weights = {n: p.detach().clone() for n, p in ours.named_parameters() if "lora_" in n}
    run = RunDir(tmp_path, save_format)
    written = run.save_merged(ours.config, weights, seed=0, init_checkpoint=str(base))
    assert written == tmp_path / "merged" / name
    tokens = ids()
    assert _max_diff(_logits(_hf(tmp_path / "merged"), tokens), our_logits(ours, tokens)) <= TOL
    # a second save replaces the folder whole
    run.save_merged(ours.config, weights, seed=0, init_checkpoint=str(base))
    assert sorted(p.name for p in (tmp_path / "merged").iterdir()) == sorted(["config.json", name])


def test_a_base_file_becomes_an_hf_folder(base, tmp_path):
    torch.save(load_checkpoint_file(base), tmp_path / "gpt2-pytorch_model.bin")  # a downloaded base: no config.json
    (tmp_path / "gpt2-config.json").write_text((base / "config.json").read_text())
    assert export.main(["hf", "--init_checkpoint", str(tmp_path / "gpt2-pytorch_model.bin"), "--model_card",
                        str(tmp_path / "gpt2-config.json"), "--out", str(tmp_path / "gpt2-hf")]) == 0
    tokens = ids()
    assert _max_diff(_logits(_hf(tmp_path / "gpt2-hf"), tokens), _logits(_hf(base), tokens)) <= TOL


def test_out_folder_is_refused_unless_overwrite_and_never_half_written(base, adapter, tmp_path, capsys, monkeypatch):
    path, _ = adapter
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    flags = ["hf", "--init_checkpoint", str(path), "--base_checkpoint", str(base), "--out", str(out)]
    with pytest.raises(SystemExit) as err:
        export.main(flags)
    message = capsys.readouterr().err
    assert err.value.code == 2 and "not empty (pass --overwrite" in message and message.count("\n") == 1

    def fail(*args, **kwargs):
        raise UserError("disk full")

    monkeypatch.setattr(export, "save_state_dict", fail)
    with pytest.raises(SystemExit):
        export.main(flags + ["--overwrite"])
    assert [p.name for p in out.iterdir()] == ["keep.txt"]         # the old folder is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]    # and no temp folder is left
    monkeypatch.undo()
    assert export.main(flags + ["--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    with pytest.raises(SystemExit):  # the base folder itself is an input
        export.main(["hf", "--init_checkpoint", str(path), "--base_checkpoint", str(base), "--out", str(base),
                     "--overwrite"])
    assert "would destroy the input" in capsys.readouterr().err and (base / "model.safetensors").is_file()


def test_the_current_folder_is_refused_as_out_before_any_work(base, adapter, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    monkeypatch.setattr(export.loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    for out in ("", ".", f"../{tmp_path.name}"):
        with pytest.raises(SystemExit) as err:
            export.main(["hf", "--init_checkpoint", str(adapter[0]), "--base_checkpoint", str(base), "--out", out,
                         "--overwrite"])
        shown = out or "."  # Path('') is .
        assert err.value.code == 2 and capsys.readouterr().err == (
            f"error: --out {shown}: is the current folder; name the folder to write\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_peft_export_needs_lora(base, tmp_path, capsys):
    with pytest.raises(SystemExit):
        export.main(["peft", "--init_checkpoint", str(base), "--out", str(tmp_path / "p")])
    assert "no LoRA weights to export" in capsys.readouterr().err and not (tmp_path / "p").exists()


# ------------------------------------------------------------------------------------------ PEFT import
def test_peft_export_then_import_gives_our_logits(base, adapter, tmp_path):
    path, ours = adapter
    export.main(["peft", "--init_checkpoint", str(path), "--base_checkpoint", str(base), "--out", str(tmp_path / "p")])
    spec = ModelSpec(init_checkpoint=str(tmp_path / "p"), base_checkpoint=str(base))
    config = resolve_config(spec)
    assert (config.lora_attn_dim, config.lora_attn_alpha, config.lora_attn_slices) == (4, 16, "qkv")
    tokens = ids()
    assert _max_diff(our_logits(load_model(spec), tokens), our_logits(ours, tokens)) <= TOL


def _peft_adapter(base, out, seed=3, **config):
    model = peft.get_peft_model(_hf(base), peft.LoraConfig(r=3, lora_alpha=6, **config))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:  # B starts at zero: give it values, so the adapter changes the outputs
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    model.save_pretrained(out)
    return model.eval()


def test_peft_made_adapter_imports_with_peft_logits(base, tmp_path):
    peft_model = _peft_adapter(base, tmp_path / "p", target_modules=["c_attn"], fan_in_fan_out=True)
    tokens = ids()
    expected = _logits(peft_model, tokens)
    ours = load_model(ModelSpec(init_checkpoint=str(tmp_path / "p"), base_checkpoint=str(base)))
    assert _max_diff(our_logits(ours, tokens), expected) <= TOL
    assert _max_diff(_logits(_hf(base), tokens), expected) > 100 * TOL
    # the mapping onto MergedLinear: A repeated for q, k, v; B as PEFT's
    layer = load_model(ModelSpec(init_checkpoint=str(tmp_path / "p"), base_checkpoint=str(base)), merge=False)
    c_attn = layer.transformer.h[1].attn.c_attn
    peft_layer = peft_model.base_model.model.transformer.h[1].attn.c_attn
    assert c_attn.enable_lora == [True, True, True] and c_attn.r == 3 and c_attn.scaling == 2.0
    assert torch.equal(c_attn.lora_A, peft_layer.lora_A["default"].weight.repeat(3, 1))
    assert torch.equal(c_attn.lora_B, peft_layer.lora_B["default"].weight)
    # the folder says r and alpha: a flag may repeat them, not change them
    with pytest.raises(UserError, match=r"--lora_dim 2, but the PEFT adapter .* has --lora_dim 3"):
        resolve_config(ModelSpec(init_checkpoint=str(tmp_path / "p"), base_checkpoint=str(base), lora_dim=2))


@pytest.mark.parametrize("config, message", [
    (dict(target_modules=["c_attn", "c_fc"]), "targets c_fc; GPT-2 here adapts only attn.c_attn"),
    (dict(target_modules=["c_proj"]), "targets c_proj"),
    (dict(target_modules=["c_attn"], use_rslora=True), "uses use_rslora=True"),
    (dict(target_modules=["c_attn"], bias="lora_only"), "uses bias='lora_only'"),
    (dict(target_modules=["c_attn"], rank_pattern={"h.0.attn.c_attn": 2}), "uses rank_pattern="),
])
def test_peft_adapters_we_cannot_run_are_refused_in_one_line(base, tmp_path, capsys, config, message):
    _peft_adapter(base, tmp_path / "p", fan_in_fan_out=True, **config)
    from gpt2_lora import generate

    capsys.readouterr()  # transformers' own progress output
    with pytest.raises(SystemExit) as err:
        generate.main(["--prompt", "x", "--init_checkpoint", str(tmp_path / "p"), "--base_checkpoint", str(base),
                       "--device", "cpu"])
    text = capsys.readouterr().err
    assert err.value.code == 2 and message in text and text.count("\n") == 1, text


def test_peft_adapter_needs_its_base(tmp_path, base):
    _peft_adapter(base, tmp_path / "p", target_modules=["c_attn"], fan_in_fan_out=True)
    with pytest.raises(UserError, match="is a PEFT adapter: pass the model it adapts as --base_checkpoint"):
        resolve_config(ModelSpec(init_checkpoint=str(tmp_path / "p")))
