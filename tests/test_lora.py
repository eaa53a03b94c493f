"""gpt2_lora.lora against loralib 0.1.2: same parameters, same outputs, same helper semantics."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import gpt2_lora.lora as lora

loralib = pytest.importorskip("loralib")

ENABLE_PATTERNS = [[True, False, True], [True, True, True], [False, True, False], [True, False]]


def _randomise(module: nn.Module, seed: int) -> dict:
    """A state dict with every entry random (lora_B too, so the LoRA path matters)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=gen, dtype=v.dtype) * 0.5 if v.is_floating_point() else v)
            for k, v in module.state_dict().items()}


def _pair(name: str, *args, seed: int = 0, **kwargs):
    """loralib's layer and ours, in float64, loaded with the same random state dict."""
    theirs = getattr(loralib, name)(*args, **kwargs).double()
    ours = getattr(lora, name)(*args, **kwargs).double()
    state = _randomise(theirs, seed)
    theirs.load_state_dict(state, strict=True)
    ours.load_state_dict(state, strict=True)
    return theirs, ours


def _check_cycles(theirs, ours, x, atol=1e-6):
    """Outputs equal in train, eval, train, eval; eval (maybe merged) equals train (unmerged)."""
    base = {k: v.clone() for k, v in ours.state_dict().items()}
    reference = None
    for mode in (True, False, True, False, True):
        theirs.train(mode)
        ours.train(mode)
        ours.train(mode)  # repeated: must not merge or unmerge twice
        assert ours.training == mode
        with torch.no_grad():
            y_theirs, y_ours = theirs(x), ours(x)
        torch.testing.assert_close(y_ours, y_theirs, rtol=0, atol=atol)
        reference = y_ours if reference is None else reference
        torch.testing.assert_close(y_ours, reference, rtol=0, atol=atol)
        assert ours.merged == theirs.merged
    for k, v in ours.state_dict().items():  # back in train mode: weights restored
        torch.testing.assert_close(v, base[k], rtol=0, atol=1e-12)


def _x(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("r", [0, 2])
@pytest.mark.parametrize("merge_weights", [True, False])
@pytest.mark.parametrize("fan_in_fan_out", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_loralib(r, merge_weights, fan_in_fan_out, bias):
    theirs, ours = _pair("Linear", 8, 6, r=r, lora_alpha=4, fan_in_fan_out=fan_in_fan_out,
                         merge_weights=merge_weights, bias=bias)
    _check_cycles(theirs, ours, _x(2, 3, 8))


@pytest.mark.parametrize("r", [0, 2])
@pytest.mark.parametrize("merge_weights", [True, False])
@pytest.mark.parametrize("fan_in_fan_out", [False, True])
@pytest.mark.parametrize("enable_lora", ENABLE_PATTERNS)
def test_merged_linear_matches_loralib(r, merge_weights, fan_in_fan_out, enable_lora):
    out = 4 * len(enable_lora)
    theirs, ours = _pair("MergedLinear", 8, out, r=r, lora_alpha=3, enable_lora=enable_lora,
                         fan_in_fan_out=fan_in_fan_out, merge_weights=merge_weights)
    if r > 0:
        n = sum(enable_lora)
        assert ours.lora_A.shape == (r * n, 8) and ours.lora_B.shape == (4 * n, r)
        assert ours.weight.shape == ((8, out) if fan_in_fan_out else (out, 8))
    _check_cycles(theirs, ours, _x(2, 5, 8))


@pytest.mark.parametrize("r", [0, 2])
@pytest.mark.parametrize("merge_weights", [True, False])
@pytest.mark.parametrize("padding_idx", [None, 0])
def test_embedding_matches_loralib(r, merge_weights, padding_idx):
    theirs, ours = _pair("Embedding", 10, 6, r=r, lora_alpha=2, merge_weights=merge_weights,
                         padding_idx=padding_idx)
    _check_cycles(theirs, ours, torch.tensor([[0, 3, 9], [1, 1, 4]]))


@pytest.mark.parametrize("r", [0, 2])
@pytest.mark.parametrize("merge_weights", [True, False])
@pytest.mark.parametrize("name,kernel_size,groups,spatial", [
    ("Conv2d", 3, 1, (7, 6)), ("Conv2d", 1, 1, (5, 5)), ("Conv2d", 3, 2, (6, 6)),
    ("Conv1d", 1, 1, (9,)), ("Conv3d", 1, 1, (3, 4, 5)),  # loralib runs these only with kernel 1
])
def test_conv_matches_loralib(r, merge_weights, name, kernel_size, groups, spatial):
    theirs, ours = _pair(name, 4, 6, kernel_size, r=r, lora_alpha=2, merge_weights=merge_weights,
                         groups=groups, padding=kernel_size // 2)
    _check_cycles(theirs, ours, _x(2, 4, *spatial))


@pytest.mark.parametrize("name,spatial", [("Conv1d", (11,)), ("Conv3d", (4, 5, 6))])
def test_conv1d_conv3d_with_kernel_over_one(name, spatial):
    """loralib 0.1.2 fails on these (its B has k times too many rows); ours: conv with W + s * (B A)."""
    conv = getattr(lora, name)(4, 6, 3, r=2, lora_alpha=4, groups=2).double()
    conv.load_state_dict(_randomise(conv, 3))
    x = _x(2, 4, *spatial)
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
    ("Linear", (8, 6), {"fan_in_fan_out": True}),
    ("MergedLinear", (8, 12), {"enable_lora": [True, False, True], "fan_in_fan_out": True}),
])
def test_dropout_and_gradients_match_loralib(name, args, kwargs):
    theirs, ours = _pair(name, *args, r=2, lora_alpha=4, lora_dropout=0.5, **kwargs)
    x = _x(3, 4, args[0])
    torch.manual_seed(7)
    y_theirs = theirs(x)
    torch.manual_seed(7)
    y_ours = ours(x)
    torch.testing.assert_close(y_ours, y_theirs, rtol=0, atol=1e-10)
    y_theirs.square().sum().backward()
    y_ours.square().sum().backward()
    for (n_t, p_t), (n_o, p_o) in zip(theirs.named_parameters(), ours.named_parameters()):
        assert n_t == n_o and p_t.requires_grad == p_o.requires_grad
        if p_t.requires_grad:
            torch.testing.assert_close(p_o.grad, p_t.grad, rtol=1e-10, atol=1e-10)


def test_float32_parity_within_1e6():
    """The activation-side MergedLinear path rounds differently from loralib's ΔW path: still ≤ 1e-6."""
    theirs = loralib.MergedLinear(64, 96, r=4, lora_alpha=8, enable_lora=[True, False, True], fan_in_fan_out=True)
    ours = lora.MergedLinear(64, 96, r=4, lora_alpha=8, enable_lora=[True, False, True], fan_in_fan_out=True)
    state = {k: v * 0.1 for k, v in _randomise(theirs, 5).items()}
    theirs.load_state_dict(state)
    ours.load_state_dict(state)
    x = torch.randn(2, 16, 64)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)


# -- initialisation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,args,kwargs", [
    ("Linear", (8, 6), {"fan_in_fan_out": True}),
    ("MergedLinear", (8, 12), {"enable_lora": [True, False, True]}),
    ("Embedding", (10, 6), {}),
    ("Conv2d", (4, 6, 3), {}),
])
def test_default_init_is_loralibs(name, args, kwargs):
    """Same RNG calls in the same order: the same seed gives loralib's very tensors."""
    torch.manual_seed(11)
    theirs = getattr(loralib, name)(*args, r=2, **kwargs)
    torch.manual_seed(11)
    ours = getattr(lora, name)(*args, r=2, **kwargs)
    for (n_t, t), (n_o, o) in zip(theirs.state_dict().items(), ours.state_dict().items()):
        assert n_t == n_o
        assert torch.equal(t, o), n_t
    assert ours.scaling == theirs.scaling == theirs.lora_alpha / 2


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


# -- helpers on a composite model -------------------------------------------------------------------

def _composite(lib):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = lib.Embedding(10, 8, r=2)
            self.c_attn = lib.MergedLinear(8, 24, r=2, enable_lora=[True, False, True], fan_in_fan_out=True)
            self.c_proj = lib.Linear(24, 8, r=2, bias=True)
            self.frozen_lora = lib.Linear(8, 8, r=0)
            self.mlp = nn.Linear(8, 8)
            self.ln_f = nn.LayerNorm(8)
            self.conv = lib.Conv2d(1, 2, 3, r=2, padding=1)
            self.register_buffer("bias", torch.ones(3))  # upstream GPT-2 has an attention buffer called bias

        def forward(self, ids):
            h = self.wte(ids)
            h = self.ln_f(self.mlp(self.frozen_lora(self.c_proj(self.c_attn(h)))))
            return h + self.conv(h.unsqueeze(1)).mean(1)

    torch.manual_seed(0)
    return Net()


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_trainable_and_state_dict_names_match_loralib(bias):
    theirs, ours = _composite(loralib), _composite(lora)
    loralib.mark_only_lora_as_trainable(theirs, bias=bias)
    lora.mark_only_lora_as_trainable(ours, bias=bias)
    trainable = lambda m: {n for n, p in m.named_parameters() if p.requires_grad}  # noqa: E731
    assert trainable(ours) == trainable(theirs)
    assert any("lora_" in n for n in trainable(ours))
    assert set(lora.lora_state_dict(ours, bias=bias)) == set(loralib.lora_state_dict(theirs, bias=bias))


def test_bad_bias_mode_raises_value_error_without_side_effects():
    model = _composite(lora)
    for fn in (lora.mark_only_lora_as_trainable, lora.lora_state_dict):
        with pytest.raises(ValueError, match="'none', 'all', 'lora_only'"):
            fn(model, bias="some")
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n or "mlp" in n)


def test_loralib_checkpoint_loads_strictly(tmp_path):
    theirs, ours = _composite(loralib), _composite(lora)
    theirs.load_state_dict(_randomise(theirs, 9))
    torch.save(theirs.state_dict(), tmp_path / "loralib.pt")
    ours.load_state_dict(torch.load(tmp_path / "loralib.pt"), strict=True)
    ids = torch.tensor([[1, 2, 3, 4]])
    for mode in (True, False):
        theirs.train(mode)
        ours.train(mode)
        with torch.no_grad():
            torch.testing.assert_close(ours(ids), theirs(ids), rtol=1e-5, atol=1e-5)


def test_merge_and_unmerge_helpers():
    model = _composite(lora)
    model.load_state_dict(_randomise(model, 4))
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


def _outputs(model, ids, training: bool):
    model.train(training)
    with torch.no_grad():
        return model(ids)


IDS = torch.tensor([[1, 2, 3], [4, 5, 6]])


def _same_weights(first_lib, second_lib, seed: int):
    """Two composite models (of these libraries) loaded with one random state dict, and that dict."""
    first, second = _composite(first_lib), _composite(second_lib)
    state = _randomise(first, seed)
    first.load_state_dict(state)
    second.load_state_dict(state)
    return first, second, state


def test_merged_state_dict_is_loralibs():
    """After eval(), the state dict holds W + ΔW, as loralib's does (the usual merged export)."""
    theirs, ours, state = _same_weights(loralib, lora, 2)
    theirs.eval()
    ours.eval()
    saved = ours.state_dict()
    for k, v in theirs.state_dict().items():
        torch.testing.assert_close(saved[k], v, rtol=0, atol=1e-6)
    assert saved._metadata["c_attn"][lora.MERGED_KEY] is True
    assert not torch.allclose(saved["c_attn.weight"], state["c_attn.weight"])


@pytest.mark.parametrize("save_training", [True, False])
@pytest.mark.parametrize("load_training", [True, False])
def test_state_dict_loads_into_either_mode(tmp_path, save_training, load_training):
    """The saved dict says whether it is merged (kept by torch.save), so it loads into a model in
    either mode and gives the saved model's outputs in both (loralib: only when the modes agree)."""
    saved = _composite(lora)
    saved.load_state_dict(_randomise(saved, 1))
    expected = {mode: _outputs(saved, IDS, mode) for mode in (True, False)}
    saved.train(save_training)
    torch.save(saved.state_dict(), tmp_path / "s.pt")
    model = _composite(lora).train(load_training)
    model.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    for mode in (load_training, not load_training, load_training):
        torch.testing.assert_close(_outputs(model, IDS, mode), expected[mode], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("save_training", [True, False])
@pytest.mark.parametrize("load_training", [True, False])
def test_loralib_full_state_dict_reads_as_loralib_reads_it(tmp_path, save_training, load_training):
    """loralib's dicts do not say whether they are merged: ours reads them as loralib does, so a user
    switching libraries gets the same outputs from the same file (loralib's own double ΔW included)."""
    source = _composite(loralib)
    source.load_state_dict(_randomise(source, 3))
    source.train(save_training)
    torch.save(source.state_dict(), tmp_path / "loralib.pt")
    theirs, ours = _composite(loralib).train(load_training), _composite(lora).train(load_training)
    for model in (theirs, ours):
        model.load_state_dict(torch.load(tmp_path / "loralib.pt", weights_only=True))
    for mode in (load_training, not load_training, load_training):
        torch.testing.assert_close(_outputs(ours, IDS, mode), _outputs(theirs, IDS, mode), rtol=1e-5, atol=1e-5)


def test_lora_weights_loaded_into_a_merged_model_replace_its_delta():
    """Loading LoRA weights alone into a merged model merges the new ΔW (loralib would keep the stale one)."""
    first, second, _ = _same_weights(lora, lora, 1)
    first.eval()
    assert first.c_attn.merged
    new_lora = {k: torch.randn_like(v) for k, v in lora.lora_state_dict(first).items()}
    first.load_state_dict(new_lora, strict=False)
    second.load_state_dict(new_lora, strict=False)
    for mode in (False, True):
        torch.testing.assert_close(_outputs(first, IDS, mode), _outputs(second, IDS, mode), rtol=1e-5, atol=1e-5)


def test_base_weights_load_as_unmerged_into_a_merged_model():
    """A dict without LoRA weights (a pretrained checkpoint) holds plain base weights in any mode."""
    model, reference = _composite(lora), _composite(lora)
    full = _randomise(model, 5)
    model.load_state_dict(full)
    model.eval()
    base_only = {k: v for k, v in _randomise(model, 6).items() if "lora_" not in k}
    model.load_state_dict(base_only, strict=False)
    reference.load_state_dict({**full, **base_only})
    for mode in (False, True):
        torch.testing.assert_close(_outputs(model, IDS, mode), _outputs(reference, IDS, mode), rtol=1e-5, atol=1e-5)


def test_assign_load_never_changes_the_callers_tensors():
    source = _composite(lora)
    source.load_state_dict(_randomise(source, 7))
    state = source.state_dict()  # train mode: unmerged, and sharing the source's storage
    before = {k: v.clone() for k, v in state.items()}
    model = _composite(lora).eval()
    model.load_state_dict(state, assign=True)  # the eval model must merge: into a copy
    assert all(torch.equal(state[k], before[k]) for k in state)
    torch.testing.assert_close(_outputs(model, IDS, False), _outputs(source, IDS, False), rtol=1e-5, atol=1e-5)


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


def test_enable_lora_as_slice_numbers_reads_as_loralib():
    """loralib indexes the slices with enable_lora: [1, 0, 1] means slices 1 and 0 (not 0 and 2)."""
    theirs, ours = _pair("MergedLinear", 8, 12, r=2, lora_alpha=3, enable_lora=[1, 0, 1])
    assert ours.enable_lora == [True, True, False]
    _check_cycles(theirs, ours, _x(2, 3, 8))
    with pytest.raises(ValueError, match="enable 2 slices"):
        lora.MergedLinear(8, 12, r=2, enable_lora=[0, 0, 1])
    with pytest.raises(ValueError, match="out of range"):
        lora.MergedLinear(8, 12, r=2, enable_lora=[3])
    # numpy / torch values as their Python equivalents; nothing enabled, or r=0: a plain layer, as loralib
    import numpy as np
    for pattern in (np.array([True, False, True]), torch.tensor([True, False, True]), [np.True_, False, np.True_]):
        assert lora.MergedLinear(8, 12, r=2, enable_lora=pattern).enable_lora == [True, False, True]
    assert lora.MergedLinear(8, 12, r=2, enable_lora=np.array([1, 0, 1])).enable_lora == [True, True, False]
    assert not lora.MergedLinear(8, 12, r=2, enable_lora=[0, 0, 0]).has_lora
    assert not lora.MergedLinear(8, 12, r=0, enable_lora=[1, 0]).has_lora


def test_loads_leave_untouched_layers_and_storage_alone():
    """A partial strict=False load changes only the layers it names, and a LoRA-only load into a merged
    layer re-merges in place (captured CUDA graphs and shared storage keep pointing at the weight)."""
    model = _composite(lora)
    model.load_state_dict(_randomise(model, 3))
    model.eval()
    before = {n: (p.data_ptr(), p.detach().clone()) for n, p in model.named_parameters()}
    model.load_state_dict({"c_proj.lora_A": torch.randn_like(model.c_proj.lora_A)}, strict=False)
    for name, param in model.named_parameters():
        assert param.data_ptr() == before[name][0], name
        if not name.startswith("c_proj."):
            assert torch.equal(param, before[name][1]), name  # not even unmerged and re-merged
    assert not torch.equal(model.c_proj.weight, before["c_proj.weight"][1])  # the new ΔW is merged


# -- MergedLinear.forward must not build ΔW (upstream issue #109) -----------------------------------

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


def test_merged_linear_forward_flops():
    """GPT-2 small c_attn, 8 tokens: the dense matmul plus the two thin LoRA matmuls, nothing else
    (the second maps the 2r LoRA features to all 3d outputs, zero for k: 0.8% of the dense work)."""
    d, r, tokens = 768, 4, 8
    kwargs = dict(r=r, lora_alpha=32, enable_lora=[True, False, True], fan_in_fan_out=True)
    ours, theirs = lora.MergedLinear(d, 3 * d, **kwargs), loralib.MergedLinear(d, 3 * d, **kwargs)
    x = torch.randn(1, tokens, d)
    counts = []
    for layer in (ours, theirs):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            layer(x)
        counts.append(counter.get_total_flops())
    dense = 2 * tokens * d * 3 * d
    low_rank = 2 * tokens * d * (2 * r) + 2 * tokens * (2 * r) * 3 * d  # x @ A^T, then block_B
    assert counts[0] == dense + low_rank
    assert counts[1] >= dense + 2 * tokens * d * 3 * d  # loralib: ΔW (conv1d) then x @ ΔW^T
    assert counts[0] < 0.52 * counts[1]


def test_lora_ind_follows_the_weight_and_is_not_saved():
    layer = lora.MergedLinear(8, 12, r=2, enable_lora=[True, False, True]).double()
    assert layer.lora_ind.dtype == torch.bool and layer.lora_ind.tolist() == [True] * 4 + [False] * 4 + [True] * 4
    assert set(layer.state_dict()) == {"weight", "bias", "lora_A", "lora_B"} and not list(layer.buffers())
    on_meta = lora.MergedLinear(8, 12, r=2, enable_lora=[True, False, True], device="meta")
    assert on_meta.lora_ind.device.type == "meta"
    built = on_meta.to_empty(device="cpu")  # no stale index buffer to fill in
    assert built.lora_ind.tolist() == layer.lora_ind.tolist()


def test_public_names():
    for name in ("LoRALayer", "Embedding", "Linear", "MergedLinear", "ConvLoRA", "Conv1d", "Conv2d",
                 "Conv3d", "mark_only_lora_as_trainable", "lora_state_dict", "merge", "unmerge"):
        assert hasattr(lora, name), name
    defined_by_loralib = {n for n, o in vars(loralib).items() if getattr(o, "__module__", "").startswith("loralib")}
    assert defined_by_loralib and defined_by_loralib <= set(lora.__all__)
