"""gpt2_lora.lora on its own: kernels loralib cannot run, init, merge/unmerge helpers, state dicts in either
merge mode, loads, and the forward without ΔW. Against loralib 0.1.2 itself: tests/parity/test_lora_loralib.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import gpt2_lora.lora as lora
from helpers import NET_IDS, composite, float64_input, outputs, random_state, same_weights


@pytest.mark.parametrize("name,spatial", [("Conv1d", (11,)), ("Conv3d", (4, 5, 6))])
def test_conv1d_conv3d_with_kernel_over_one(name, spatial):
    """loralib 0.1.2 fails on these (its B has k times too many rows); ours: conv with W + s * (B A)."""
    conv = getattr(lora, name)(4, 6, 3, r=2, lora_alpha=4, groups=2).double()
    conv.load_state_dict(random_state(conv, 3))
    x = float64_input(2, 4, *spatial)
    delta = (conv.lora_B @ conv.lora_A).reshape(conv.conv.weight.shape) * 2.0
    functional = getattr(torch.nn.functional, name.lower())
    expected = functional(x, conv.conv.weight + delta, conv.conv.bias, groups=2)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-10)
    conv.eval()
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-10)


def test_merged_linear_without_enabled_slices_is_plain_linear():
    layer = lora.MergedLinear(8, 12, r=4, enable_lora=[False, False, False])
    assert not hasattr(layer, "lora_A") and layer.weight.requires_grad
    x = torch.randn(3, 8)
    torch.testing.assert_close(layer(x), nn.functional.linear(x, layer.weight, layer.bias))
    layer.eval()
    torch.testing.assert_close(layer(x), nn.functional.linear(x, layer.weight, layer.bias))


@pytest.mark.parametrize("name,args,kwargs", [
    ("Linear", (256, 256), {}),
    ("MergedLinear", (256, 768), {"enable_lora": [True, False, True]}),
    ("Embedding", (256, 256), {}),
    ("Conv2d", (64, 64, 3), {}),
])
def test_gaussian_init(name, args, kwargs):
    torch.manual_seed(0)
    layer = getattr(lora, name)(*args, r=16, init="gaussian", **kwargs)
    for p in (layer.lora_A, layer.lora_B):
        assert p.numel() >= 4096
        assert abs(p.std().item() - 0.02) < 0.002 and abs(p.mean().item()) < 0.002


def test_bad_init_is_rejected():
    with pytest.raises(ValueError, match="gaussian"):
        lora.Linear(4, 4, r=2, init="xavier")


def test_bad_bias_mode_raises_value_error_without_side_effects():
    model = composite(lora)
    for fn in (lora.mark_only_lora_as_trainable, lora.lora_state_dict):
        with pytest.raises(ValueError, match="'none', 'all', 'lora_only'"):
            fn(model, bias="some")
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n or "mlp" in n)


def test_merge_and_unmerge_helpers():
    model = composite(lora)
    model.load_state_dict(random_state(model, 4))
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    base = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        unmerged = model(ids)
        lora.merge(model)
        lora.merge(model)  # idempotent: no double merge
        assert model.training
        assert all(m.merged for m in model.modules() if isinstance(m, lora.LoRALayer))
        torch.testing.assert_close(model(ids), unmerged, rtol=1e-5, atol=1e-5)
        shifted = model.c_attn.weight - base["c_attn.weight"]
        torch.testing.assert_close(shifted, model.c_attn.delta_weight(), rtol=1e-5, atol=1e-6)
        assert torch.equal(model.frozen_lora.weight, base["frozen_lora.weight"])  # r=0: nothing to add
        model.eval()  # already merged: eval must not add ΔW again
        torch.testing.assert_close(model(ids), unmerged, rtol=1e-5, atol=1e-5)
        lora.unmerge(model)
        lora.unmerge(model)
        assert not any(m.merged for m in model.modules() if isinstance(m, lora.LoRALayer))
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, base[k], rtol=0, atol=1e-6)


@pytest.mark.parametrize("save_training", [True, False])
@pytest.mark.parametrize("load_training", [True, False])
def test_state_dict_loads_into_either_mode(tmp_path, save_training, load_training):
    """The saved dict says whether it is merged (kept by torch.save), so it loads into a model in
    either mode and gives the saved model's outputs in both (loralib: only when the modes agree)."""
    saved = composite(lora)
    saved.load_state_dict(random_state(saved, 1))
    expected = {mode: outputs(saved, NET_IDS, mode) for mode in (True, False)}
    saved.train(save_training)
    torch.save(saved.state_dict(), tmp_path / "s.pt")
    model = composite(lora).train(load_training)
    model.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    for mode in (load_training, not load_training, load_training):
        torch.testing.assert_close(outputs(model, NET_IDS, mode), expected[mode], rtol=1e-5, atol=1e-5)


def test_lora_weights_loaded_into_a_merged_model_replace_its_delta():
    """Loading LoRA weights alone into a merged model merges the new ΔW (loralib would keep the stale one)."""
    first, second, _ = same_weights(lora, lora, 1)
    first.eval()
    assert first.c_attn.merged
    new_lora = {k: torch.randn_like(v) for k, v in lora.lora_state_dict(first).items()}
    first.load_state_dict(new_lora, strict=False)
    second.load_state_dict(new_lora, strict=False)
    for mode in (False, True):
        torch.testing.assert_close(outputs(first, NET_IDS, mode), outputs(second, NET_IDS, mode), rtol=1e-5, atol=1e-5)


def test_base_weights_load_as_unmerged_into_a_merged_model():
    """A dict without LoRA weights (a pretrained checkpoint) holds plain base weights in any mode."""
    model, reference = composite(lora), composite(lora)
    full = random_state(model, 5)
    model.load_state_dict(full)
    model.eval()
    base_only = {k: v for k, v in random_state(model, 6).items() if "lora_" not in k}
    model.load_state_dict(base_only, strict=False)
    reference.load_state_dict({**full, **base_only})
    for mode in (False, True):
        torch.testing.assert_close(outputs(model, NET_IDS, mode), outputs(reference, NET_IDS, mode),
                                   rtol=1e-5, atol=1e-5)


def test_assign_load_never_changes_the_callers_tensors():
    source = composite(lora)
    source.load_state_dict(random_state(source, 7))
    state = source.state_dict()  # train mode: unmerged, and sharing the source's storage
    before = {k: v.clone() for k, v in state.items()}
    model = composite(lora).eval()
    model.load_state_dict(state, assign=True)  # the eval model must merge: into a copy
    assert all(torch.equal(state[k], before[k]) for k in state)
    torch.testing.assert_close(outputs(model, NET_IDS, False), outputs(source, NET_IDS, False), rtol=1e-5, atol=1e-5)


def test_layers_written_the_loralib_way_keep_working():
    """A user's own LoRALayer subclass with its own merge code (no delta_weight), and the mixin on an
    object that is not a module, work as with loralib."""

    class MyLinear(nn.Linear, lora.LoRALayer):
        def __init__(self):
            nn.Linear.__init__(self, 4, 4)
            lora.LoRALayer.__init__(self, r=2, lora_alpha=2, lora_dropout=0.0, merge_weights=True)
            self.lora_A = nn.Parameter(torch.randn(2, 4))
            self.lora_B = nn.Parameter(torch.randn(4, 2))

        def train(self, mode=True):
            nn.Linear.train(self, mode)
            if mode == self.merged:
                sign = -1 if mode else 1
                self.weight.data += sign * (self.lora_B @ self.lora_A)
                self.merged = not mode
            return self

    merged = MyLinear().eval()
    state = merged.state_dict()
    assert merged.merged and lora.MERGED_KEY not in state._metadata[""]
    copy = MyLinear().eval()
    copy.load_state_dict(state)
    torch.testing.assert_close(copy.weight, merged.weight)

    class NotAModule:
        pass

    holder = NotAModule()
    lora.LoRALayer.__init__(holder, r=1, lora_alpha=2, lora_dropout=0.0, merge_weights=False)
    assert holder.r == 1 and not holder.merged


def test_loads_leave_untouched_layers_and_storage_alone():
    """A partial strict=False load changes only the layers it names, and a LoRA-only load into a merged
    layer re-merges in place (captured CUDA graphs and shared storage keep pointing at the weight)."""
    model = composite(lora)
    model.load_state_dict(random_state(model, 3))
    model.eval()
    before = {n: (p.data_ptr(), p.detach().clone()) for n, p in model.named_parameters()}
    model.load_state_dict({"c_proj.lora_A": torch.randn_like(model.c_proj.lora_A)}, strict=False)
    for name, param in model.named_parameters():
        assert param.data_ptr() == before[name][0], name
        if not name.startswith("c_proj."):
            assert torch.equal(param, before[name][1]), name  # not even unmerged and re-merged
    assert not torch.equal(model.c_proj.weight, before["c_proj.weight"][1])  # the new ΔW is merged


def test_merged_linear_forward_does_not_build_delta_w(monkeypatch):
    layer = lora.MergedLinear(16, 48, r=4, lora_alpha=8, enable_lora=[True, False, True], fan_in_fan_out=True)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(2, 5, 16)
    expected = x @ (layer.weight + layer.delta_weight()) + layer.bias

    def forbidden(*_args, **_kwargs):
        raise AssertionError("forward built the full ΔW")

    for name in ("merge_AB", "delta_weight", "zero_pad"):
        monkeypatch.setattr(layer, name, forbidden)
    y = layer(x)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    y.sum().backward()
    assert layer.lora_A.grad is not None and layer.lora_B.grad is not None and layer.weight.grad is None


def test_lora_ind_follows_the_weight_and_is_not_saved():
    layer = lora.MergedLinear(8, 12, r=2, enable_lora=[True, False, True]).double()
    assert layer.lora_ind.dtype == torch.bool and layer.lora_ind.tolist() == [True] * 4 + [False] * 4 + [True] * 4
    assert set(layer.state_dict()) == {"weight", "bias", "lora_A", "lora_B"} and not list(layer.buffers())
    on_meta = lora.MergedLinear(8, 12, r=2, enable_lora=[True, False, True], device="meta")
    assert on_meta.lora_ind.device.type == "meta"
    built = on_meta.to_empty(device="cpu")  # no stale index buffer to fill in
    assert built.lora_ind.tolist() == layer.lora_ind.tolist()
