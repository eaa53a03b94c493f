"""gpt2_lora.export: the out folder's rules (refused unless --overwrite, never half written, never over an input),
and a PEFT export read back by our loader. Loaded by transformers and peft themselves:
tests/parity/test_export_hf.py."""

from __future__ import annotations

import pytest

from gpt2_lora import export
from gpt2_lora.errors import UserError
from gpt2_lora.loading import ModelSpec, load_model, resolve_config
from helpers import ids, max_diff, our_logits

TOL = 1e-4


def test_out_folder_is_refused_unless_overwrite_and_never_half_written(tiny_base, tiny_adapter, tmp_path, capsys,
                                                                       monkeypatch):
    path = tiny_adapter.path
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    flags = ["hf", "--init_checkpoint", str(path), "--base_checkpoint", str(tiny_base), "--out", str(out)]
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
        export.main(["hf", "--init_checkpoint", str(path), "--base_checkpoint", str(tiny_base), "--out", str(tiny_base),
                     "--overwrite"])
    assert "would destroy the input" in capsys.readouterr().err and (tiny_base / "model.safetensors").is_file()


def test_the_current_folder_is_refused_as_out_before_any_work(tiny_base, tiny_adapter, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    monkeypatch.setattr(export.loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    for out in ("", ".", f"../{tmp_path.name}"):
        with pytest.raises(SystemExit) as err:
            export.main(["hf", "--init_checkpoint", str(tiny_adapter[0]), "--base_checkpoint", str(tiny_base), "--out", out,
                         "--overwrite"])
        shown = out or "."  # Path('') is .
        assert err.value.code == 2 and capsys.readouterr().err == (
            f"error: --out {shown}: is the current folder; name the folder to write\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_peft_export_needs_lora(tiny_base, tmp_path, capsys):
    with pytest.raises(SystemExit):
        export.main(["peft", "--init_checkpoint", str(tiny_base), "--out", str(tmp_path / "p")])
    assert "no LoRA weights to export" in capsys.readouterr().err and not (tmp_path / "p").exists()


# ------------------------------------------------------------------------------------------ PEFT import
def test_peft_export_then_import_gives_our_logits(tiny_base, tiny_adapter, tmp_path):
    path, _, ours = tiny_adapter
    export.main(["peft", "--init_checkpoint", str(path), "--base_checkpoint", str(tiny_base), "--out",
                 str(tmp_path / "p")])
    spec = ModelSpec(init_checkpoint=str(tmp_path / "p"), base_checkpoint=str(tiny_base))
    config = resolve_config(spec)
    assert (config.lora_attn_dim, config.lora_attn_alpha, config.lora_attn_slices) == (4, 16, "qkv")
    tokens = ids()
    assert max_diff(our_logits(load_model(spec), tokens), our_logits(ours, tokens)) <= TOL
