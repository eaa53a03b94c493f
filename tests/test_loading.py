"""gpt2_lora.loading: the config from flags, an adapter's own description and HF folders; contradictions as
one-line errors; base then adapter, merged; beam without --lora_dim; the q,k,v slices option. On conftest's
tiny_base (written by transformers) and tiny_adapter; HF folders against transformers' logits:
tests/parity/test_loading_hf.py."""

from __future__ import annotations

import json

import pytest
import torch

from gpt2_lora import beam as beam_mod
from gpt2_lora.beam import BeamSettings, generate
from gpt2_lora.checkpoint import (describe_weights, load_checkpoint_file, lora_only_state_dict, read_metadata,
                                  save_weights)
from gpt2_lora.errors import UserError
from gpt2_lora.loading import ModelSpec, load, load_model, resolve_config, spec_from_args
from gpt2_lora.model import GPT2Config, GPT2LMModel
from helpers import HF_TINY, hf_base, ids, lora_model, our_logits, save_adapter, write_encoded


def test_description_is_enough(tiny_base, tiny_adapter):
    adapter, _, model = tiny_adapter
    spec = ModelSpec(init_checkpoint=str(adapter), base_checkpoint=str(tiny_base))
    config = resolve_config(spec)
    assert (config.lora_attn_dim, config.lora_attn_alpha, config.n_embd, config.vocab_size) == (2, 8, 32, 96)
    loaded = load_model(spec)
    assert not loaded.training and all(b.attn.c_attn.merged for b in loaded.transformer.h)
    tokens = ids()
    torch.testing.assert_close(our_logits(loaded, tokens), our_logits(model, tokens), rtol=1e-5, atol=1e-5)
    # the base as its weights file rather than its folder: the same bytes, so the same SHA-256
    same = resolve_config(ModelSpec(init_checkpoint=str(adapter), base_checkpoint=str(tiny_base / "model.safetensors")))
    assert same == config
    # flags that repeat the file's settings are fine
    assert resolve_config(ModelSpec(init_checkpoint=str(adapter), base_checkpoint=str(tiny_base), lora_dim=2,
                                    lora_alpha=8, model_card=str(tiny_base / "config.json"))) == config


@pytest.mark.parametrize("change, message", [
    (dict(lora_dim=4), r"--lora_dim 4, but .*model.10.pt was trained with --lora_dim 2"),
    (dict(lora_alpha=16), r"--lora_alpha 16, but .*model.10.pt was trained with --lora_alpha 8"),
    (dict(model_card="gpt2.sm"), r"--model_card gpt2.sm and the model .*model.10.pt was trained on are different "
                                 r"models \(vocab_size 50257 vs 96, n_positions 1024 vs 64, n_embd 768 vs 32"),
])
def test_contradicting_flags_are_one_line_errors(tiny_base, tiny_adapter, change, message):
    spec = ModelSpec(init_checkpoint=str(tiny_adapter[0]), base_checkpoint=str(tiny_base), **change)
    with pytest.raises(UserError, match=message) as err:
        resolve_config(spec)
    assert "\n" not in str(err.value)


def test_another_base_is_refused_naming_both_files(tiny_adapter, tmp_path):
    other = hf_base(tmp_path / "other", seed=7)
    with pytest.raises(UserError) as err:
        resolve_config(ModelSpec(init_checkpoint=str(tiny_adapter[0]), base_checkpoint=str(other)))
    message = str(err.value)
    assert f"--base_checkpoint {other}" in message and "is not the base" in message and "(hf, sha256" in message
    with pytest.raises(UserError, match=r"is a LoRA adapter for hf \(sha256 [0-9a-f]{12}…\): pass that file as "
                                        r"--base_checkpoint"):
        resolve_config(ModelSpec(init_checkpoint=str(tiny_adapter[0])))


def test_another_model_config_in_the_base_folder_is_refused(tiny_adapter, tmp_path):
    other = hf_base(tmp_path / "wide", n_embd=48)
    with pytest.raises(UserError, match=r"trained on and .*wide/config.json are different models \(n_embd 32 vs 48\)"):
        resolve_config(ModelSpec(init_checkpoint=str(tiny_adapter[0]), base_checkpoint=str(other)))


def test_files_without_description_take_the_flags_as_before(tiny_base, tiny_adapter):
    _, old, model = tiny_adapter
    spec = ModelSpec(init_checkpoint=str(old), base_checkpoint=str(tiny_base), lora_dim=2, lora_alpha=8)
    tokens = ids()
    torch.testing.assert_close(our_logits(load_model(spec), tokens), our_logits(model, tokens), rtol=1e-5, atol=1e-5)
    # upstream's defaults (no LoRA) meet LoRA weights: load_weight's one-line error, as today
    with pytest.raises(UserError, match="pass the --lora_dim it was trained with"):
        load_model(ModelSpec(init_checkpoint=str(old), base_checkpoint=str(tiny_base)))
    # without a base the LoRA-only file never runs on random weights
    with pytest.raises(UserError, match="lacks .* base weight"):
        load_model(ModelSpec(init_checkpoint=str(old), lora_dim=2, lora_alpha=8, model_card=str(tiny_base)))


def test_legacy_torch_files_still_load(tiny_base, tmp_path):
    """Files in torch's pre-zip layout (as old hub downloads are) hold no description; they load as before."""
    legacy = tmp_path / "gpt2-pytorch_model.bin"
    torch.save(load_checkpoint_file(tiny_base), legacy, _use_new_zipfile_serialization=False)
    assert read_metadata(legacy) is None
    model = load_model(ModelSpec(init_checkpoint=str(legacy), model_card=str(tiny_base / "config.json")))
    reference = load_model(ModelSpec(init_checkpoint=str(tiny_base)))
    tokens = ids()
    assert torch.equal(our_logits(model, tokens), our_logits(reference, tokens))


def test_trained_over_random_weights_cannot_be_used_as_an_adapter(tiny_base, tmp_path):
    model = lora_model(tiny_base)
    adapter = save_adapter(model, tmp_path / "model.1.pt", None)
    with pytest.raises(UserError, match="trained over randomly initialised weights"):
        resolve_config(ModelSpec(init_checkpoint=str(adapter), base_checkpoint=str(tiny_base)))


def test_full_weights_need_no_base(tmp_path):
    config = GPT2Config(**HF_TINY)
    torch.manual_seed(0)
    model = GPT2LMModel(config).eval()
    path = save_weights(dict(model.state_dict()), tmp_path / "model.5.safetensors",
                        describe_weights(config, lora_dropout=0.0, model_card=None, base_checkpoint=None))
    loaded = load(adapter=path, device="cpu")
    tokens = ids()
    torch.testing.assert_close(our_logits(loaded, tokens), our_logits(model, tokens))


def test_python_api_load(tiny_base, tiny_adapter):
    adapter, _, model = tiny_adapter
    tokens = ids()
    loaded = load(base_checkpoint=tiny_base, adapter=adapter, device="cpu")
    torch.testing.assert_close(our_logits(loaded, tokens), our_logits(model, tokens), rtol=1e-5, atol=1e-5)
    bf16 = load(base_checkpoint=tiny_base, adapter=adapter, device="cpu", precision="bf16")
    assert bf16.transformer.wte.weight.dtype == torch.bfloat16
    with pytest.raises(UserError, match="precision must be one of fp32, bf16"):
        load(base_checkpoint=tiny_base, precision="fp16")


def test_spec_from_args_counts_only_flags_given(tiny_adapter):
    parser = beam_mod.build_parser()
    argv = ["--init_checkpoint", str(tiny_adapter[0]), "--lora_dim", "0"]
    spec = spec_from_args(parser.parse_args(argv), parser, argv)
    assert (spec.model_card, spec.lora_dim, spec.lora_alpha) == (None, 0, None)  # --lora_dim 0 was given
    assert (spec.default_card, spec.default_lora_dim, spec.default_lora_alpha) == ("gpt2.sm", 0, 128)


def test_beam_cli_needs_no_lora_flags_with_a_description(tiny_base, tiny_adapter, tmp_path):
    adapter, old, model = tiny_adapter
    contexts = [[3, 9, 27, 4], [11, 5], [60, 61, 62, 63, 1, 2]]
    write_encoded(tmp_path / "d.jsonl", ((c, [5]) for c in contexts))
    common = ["--data", str(tmp_path / "d.jsonl"), "--seq_len", "24", "--eval_len", "8", "--beam", "3",
              "--work_dir", str(tmp_path), "--device", "cpu", "--base_checkpoint", str(tiny_base)]
    assert beam_mod.main(common + ["--init_checkpoint", str(adapter), "--output_file", "new.jsonl"]) == 0
    # a file without a description: the flags, as before
    assert beam_mod.main(common + ["--init_checkpoint", str(old), "--lora_dim", "2", "--lora_alpha", "8",
                                   "--model_card", str(tiny_base / "config.json"), "--output_file", "old.jsonl"]) == 0
    new, before = ((tmp_path / n).read_text() for n in ("new.jsonl", "old.jsonl"))
    expected = generate(model, contexts, BeamSettings(beam=3, eval_len=8, seq_len=24), progress=False)
    assert new == before == "".join(json.dumps({"id": i, "predict": p}) + "\n" for i, p in enumerate(expected))
    with pytest.raises(SystemExit) as err:
        beam_mod.main(common + ["--init_checkpoint", str(adapter), "--lora_dim", "4"])
    assert err.value.code == 2


# ------------------------------------------------------------------------------------ lora_attn_slices
# ------------------------------------------------------------------------------------ lora_attn_slices
def test_lora_attn_slices_default_keeps_the_papers_layout():
    qv = GPT2LMModel(GPT2Config(**HF_TINY, lora_attn_dim=2)).transformer.h[0].attn.c_attn
    assert qv.enable_lora == [True, False, True] and tuple(qv.lora_A.shape) == (4, 32)
    assert tuple(qv.lora_B.shape) == (64, 2)
    qkv = GPT2LMModel(GPT2Config(**HF_TINY, lora_attn_dim=2, lora_attn_slices="qkv")).transformer.h[0].attn.c_attn
    assert qkv.enable_lora == [True, True, True] and tuple(qkv.lora_A.shape) == (6, 32)
    assert tuple(qkv.lora_B.shape) == (96, 2)
    with pytest.raises(ValueError, match="lora_attn_slices must be one of"):  # the library names its field
        GPT2Config(lora_attn_slices="vq")


def test_description_records_the_slices(tiny_base, tmp_path):
    model = lora_model(tiny_base, slices="qkv")
    adapter = save_adapter(model, tmp_path / "model.3.safetensors", tiny_base)
    assert set(load_checkpoint_file(adapter)) == {k for k in model.state_dict() if "lora_" in k}
    spec = ModelSpec(init_checkpoint=str(adapter), base_checkpoint=str(tiny_base))
    assert resolve_config(spec).lora_attn_slices == "qkv"
    tokens = ids()
    torch.testing.assert_close(our_logits(load_model(spec), tokens), our_logits(model, tokens), rtol=1e-5, atol=1e-5)
    # a description without the key (written before it existed) reads as the paper's q, v
    meta = read_metadata(adapter)
    del meta["lora_attn_slices"]
    save_weights(lora_only_state_dict(lora_model(tiny_base)), tmp_path / "older.pt", meta)
    older = ModelSpec(init_checkpoint=str(tmp_path / "older.pt"), base_checkpoint=str(tiny_base))
    assert resolve_config(older).lora_attn_slices == "qv"


def test_an_adapter_given_as_the_base_is_named(tiny_base, tiny_adapter, tmp_path):
    from gpt2_lora.export import write_peft_folder

    adapter = tiny_adapter[0]
    with pytest.raises(UserError) as err:  # the two roles swapped
        load_model(ModelSpec(init_checkpoint=str(tiny_base), base_checkpoint=str(adapter)))
    assert str(err.value) == (f"--base_checkpoint {adapter} is a LoRA adapter (r=2), not a base model: pass it as "
                              f"--init_checkpoint and its base (hf) as --base_checkpoint")
    peft = write_peft_folder(lora_model(tiny_base), tmp_path / "peft", adapter="a", base=None)
    with pytest.raises(UserError, match=r"--base_checkpoint .*peft is a PEFT adapter, not a base model: pass it as "
                                        r"--init_checkpoint"):
        resolve_config(ModelSpec(init_checkpoint=str(tiny_base), base_checkpoint=str(peft)))


def test_lora_flags_over_weights_without_lora_are_refused(tiny_base):
    """The adapter's random start (B = 0) would silently decode, or export, the base as if it were adapted."""
    for spec in (ModelSpec(init_checkpoint=str(tiny_base), lora_dim=4), ModelSpec(base_checkpoint=str(tiny_base), lora_dim=4)):
        with pytest.raises(UserError, match=r"^--lora_dim 4, but .*hf holds no LoRA weights: pass the trained "
                                            r"adapter as --init_checkpoint"):
            load_model(spec)


def test_a_peft_adapter_of_another_depth_is_named_once(tiny_base, tmp_path):
    from gpt2_lora.export import write_peft_folder

    peft = write_peft_folder(lora_model(tiny_base), tmp_path / "peft", adapter="a", base=None)
    deeper = hf_base(tmp_path / "deeper", n_layer=3)
    with pytest.raises(UserError) as err:
        load_model(ModelSpec(init_checkpoint=str(peft), base_checkpoint=str(deeper)))
    assert str(err.value) == f"{peft / 'adapter_model.safetensors'}: no c_attn LoRA for layer(s) [2] of this 3-layer model"


def test_a_weights_file_of_an_hf_folder_names_its_config_json_on_a_mismatch(tiny_base):
    """A bare weights file says nothing of its sizes: the default card is tried, and the error says what the
    config.json beside it would give."""
    with pytest.raises(UserError) as err:
        load_model(ModelSpec(init_checkpoint=str(tiny_base / "model.safetensors"), default_card="gpt2.sm"))
    assert str(err.value).endswith(f"; its {tiny_base / 'config.json'} says vocab_size 96, n_positions 64, n_embd 32, "
                                   f"n_layer 2, n_head 4: pass --model_card {tiny_base / 'config.json'}")
    model = load_model(ModelSpec(init_checkpoint=str(tiny_base / "model.safetensors"), model_card=str(tiny_base / "config.json")))
    assert model.config.n_embd == 32
