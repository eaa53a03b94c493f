"""Checkpoint files: formats, HF directories, atomic writes, and one-line errors for bad files."""

from __future__ import annotations

import argparse

import pytest
import torch

from gpt2_lora.checkpoint import (hf_config_file, load_checkpoint_file, load_into, lora_only_state_dict,
                                  resolve_checkpoint, save_state_dict)
from gpt2_lora.errors import UserError
from gpt2_lora.model import GPT2LMModel
from helpers import tiny_config


def state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(3, 4, generator=gen), "b": torch.arange(5), "c": torch.randn(2, generator=gen)}


@pytest.mark.parametrize("name", ["x.safetensors", "x.bin", "x.pt"])
def test_save_and_load_round_trip(tmp_path, name):
    original = state()
    save_state_dict(original, tmp_path / "sub" / name)
    loaded = load_checkpoint_file(tmp_path / "sub" / name)
    assert loaded.keys() == original.keys()
    for key in original:
        assert torch.equal(loaded[key], original[key]) and loaded[key].dtype == original[key].dtype
    assert [p.name for p in (tmp_path / "sub").iterdir()] == [name]  # no temp file left behind


def test_safetensors_accepts_tied_weights_and_rejects_nested(tmp_path):
    shared = torch.randn(4, 2)
    save_state_dict({"wte.weight": shared, "lm_head.weight": shared}, tmp_path / "tied.safetensors")
    loaded = load_checkpoint_file(tmp_path / "tied.safetensors")
    assert torch.equal(loaded["wte.weight"], shared) and torch.equal(loaded["lm_head.weight"], shared)
    with pytest.raises(ValueError, match="flat dict"):
        save_state_dict({"model_state_dict": state()}, tmp_path / "nested.safetensors")
    save_state_dict({"model_state_dict": state()}, tmp_path / "nested.pt")  # upstream's layout, torch format
    assert torch.equal(load_checkpoint_file(tmp_path / "nested.pt")["model_state_dict"]["b"], torch.arange(5))


def test_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_state_dict(state(), path)
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_state_dict({"bad": lambda: None}, path)  # cannot be pickled
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_directory_prefers_safetensors_and_finds_config(tmp_path):
    save_state_dict({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    assert resolve_checkpoint(tmp_path) == tmp_path / "pytorch_model.bin"
    save_state_dict({"x": torch.ones(1)}, tmp_path / "model.safetensors")
    assert torch.equal(load_checkpoint_file(tmp_path)["x"], torch.ones(1))
    assert hf_config_file(tmp_path) is None
    (tmp_path / "config.json").write_text("{}")
    assert hf_config_file(tmp_path) == hf_config_file(tmp_path / "model.safetensors") == tmp_path / "config.json"


def test_bad_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found: .*nope.bin"):
        load_checkpoint_file(tmp_path / "nope.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="model.safetensors, pytorch_model.bin"):
        load_checkpoint_file(tmp_path / "empty")
    for name in ("junk.bin", "junk.safetensors"):
        (tmp_path / name).write_bytes(b"\x00not a checkpoint" * 10)
        with pytest.raises(UserError, match=f"{name}: not a readable"):
            load_checkpoint_file(tmp_path / name)
    save_state_dict(state(), tmp_path / "cut.pt")
    data = (tmp_path / "cut.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.pt: not a readable") as err:
        load_checkpoint_file(tmp_path / "cut.pt")
    assert str(err.value).endswith(")") and "miniz" not in str(err.value)  # whole sentences, not torch's advice
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(UserError, match="expected a dict"):
        load_checkpoint_file(tmp_path / "list.pt")


def test_pickled_objects_need_trust(tmp_path):
    torch.save({"args": argparse.Namespace(lr=1.0), "w": torch.ones(1)}, tmp_path / "args.pt")
    with pytest.raises(UserError, match="trusted=True"):
        load_checkpoint_file(tmp_path / "args.pt")
    assert load_checkpoint_file(tmp_path / "args.pt", trusted=True)["args"].lr == 1.0


def test_base_then_lora_only_files(tmp_path):
    torch.manual_seed(0)
    trained = GPT2LMModel(tiny_config(vocab_size=300, n_positions=16, lora_attn_dim=2, lora_init="gaussian")).eval()
    base = {k: v for k, v in trained.state_dict().items() if "lora_" not in k}
    save_state_dict(base, tmp_path / "base.safetensors")
    adapter = lora_only_state_dict(trained)
    assert sorted(adapter) == sorted(k for k in trained.state_dict() if "lora_" in k)
    save_state_dict({"model_state_dict": adapter}, tmp_path / "adapter.pt")

    fresh = GPT2LMModel(tiny_config(vocab_size=300, n_positions=16, lora_attn_dim=2)).eval()
    with pytest.raises(UserError, match=r"adapter.pt: a LoRA-only checkpoint lacks"):
        load_into(fresh, tmp_path / "adapter.pt")
    report = load_into(fresh, tmp_path / "base.safetensors", tmp_path / "adapter.pt")
    assert report.kind == "lora-only"
    ids = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        assert torch.equal(fresh(ids), trained(ids))


@pytest.mark.parametrize("name", ["model.5.pt", "model.5.safetensors"])
def test_trained_weights_describe_themselves(tmp_path, name):
    from gpt2_lora.checkpoint import describe_weights, read_metadata, save_weights
    from gpt2_lora.model import GPT2Config

    config = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, n_ctx=64, lora_attn_dim=2, lora_attn_alpha=8)
    base = tmp_path / "base.pt"
    save_state_dict({"wte.weight": torch.ones(3)}, base)
    meta = describe_weights(config, lora_dropout=0.1, model_card="gpt2.sm", base_checkpoint=base)
    weights = {"transformer.h.0.attn.c_attn.lora_A": torch.randn(4, 32)}
    save_weights(weights, tmp_path / name, meta)
    assert read_metadata(tmp_path / name) == meta
    assert meta["lora_dim"] == 2 and meta["lora_alpha"] == 8 and meta["base_checkpoint"]["name"] == "base.pt"
    assert len(meta["base_checkpoint"]["sha256"]) == 64
    loaded = load_checkpoint_file(tmp_path / name)  # the description never reaches load_weight
    tensors = loaded.get("model_state_dict", loaded)
    assert list(tensors) in (["module.transformer.h.0.attn.c_attn.lora_A"], ["transformer.h.0.attn.c_attn.lora_A"])
    save_weights(weights, tmp_path / ("plain" + name[7:]))
    assert read_metadata(tmp_path / ("plain" + name[7:])) is None
