"""gpt2_lora.lora against loralib 0.1.2: same parameters, same outputs, same helper semantics."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import gpt2_lora.lora as lora
from helpers import NET_IDS, composite, float64_input, outputs, random_state, same_weights

loralib = pytest.importorskip("loralib")

ENABLE_PATTERNS = [[True, False, True], [True, True, True], [False, True, False], [True, False]]


def _pair(name: str, *args, seed: int = 0, **kwargs):
    """loralib's layer and ours, in float64, loaded with the same random state dict."""
    theirs = getattr(loralib, name)(*args, **kwargs).double()
    ours = getattr(lora, name)(*args, **kwargs).double()
    state = random_state(theirs, seed)
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


@pytest.mark.parametrize("r", [0, 2])
@pytest.mark.parametrize("merge_weights", [True, False])
@pytest.mark.parametrize("fan_in_fan_out", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_loralib(r, merge_weights, fan_in_fan_out, bias):
    theirs, ours = _pair("Linear", 8, 6, r=r, lora_alpha=4, fan_in_fan_out=fan_in_fan_out,
                         merge_weights=merge_weights, bias=bias)
    _check_cycles(theirs, ours, float64_input(2, 3, 8))


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
    _check_cycles(theirs, ours, float64_input(2, 5, 8))


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
    _check_cycles(theirs, ours, float64_input(2, 4, *spatial))


@pytest.mark.parametrize("name,args,kwargs", [
    ("Linear", (8, 6), {"fan_in_fan_out": True}),
    ("MergedLinear", (8, 12), {"enable_lora": [True, False, True], "fan_in_fan_out": True}),
])
def test_dropout_and_gradients_match_loralib(name, args, kwargs):
    theirs, ours = _pair(name, *args, r=2, lora_alpha=4, lora_dropout=0.5, **kwargs)
    x = float64_input(3, 4, args[0])
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
    state = {k: v * 0.1 for k, v in random_state(theirs, 5).items()}
    theirs.load_state_dict(state)
    ours.load_state_dict(state)
    x = torch.randn(2, 16, 64)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)


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


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_trainable_and_state_dict_names_match_loralib(bias):
    theirs, ours = composite(loralib), composite(lora)
    loralib.mark_only_lora_as_trainable(theirs, bias=bias)
    lora.mark_only_lora_as_trainable(ours, bias=bias)
    trainable = lambda m: {n for n, p in m.named_parameters() if p.requires_grad}  # noqa: E731
    assert trainable(ours) == trainable(theirs)
    assert any("lora_" in n for n in trainable(ours))
    assert set(lora.lora_state_dict(ours, bias=bias)) == set(loralib.lora_state_dict(theirs, bias=bias))


def test_loralib_checkpoint_loads_strictly(tmp_path):
    theirs, ours = composite(loralib), composite(lora)
    theirs.load_state_dict(random_state(theirs, 9))
    torch.save(theirs.state_dict(), tmp_path / "loralib.pt")
    ours.load_state_dict(torch.load(tmp_path / "loralib.pt"), strict=True)
    ids = torch.tensor([[1, 2, 3, 4]])
    for mode in (True, False):
        theirs.train(mode)
        ours.train(mode)
        with torch.no_grad():
            torch.testing.assert_close(ours(ids), theirs(ids), rtol=1e-5, atol=1e-5)


def test_merged_state_dict_is_loralibs():
    """After eval(), the state dict holds W + ΔW, as loralib's does (the usual merged export)."""
    theirs, ours, state = same_weights(loralib, lora, 2)
    theirs.eval()
    ours.eval()
    saved = ours.state_dict()
    for k, v in theirs.state_dict().items():
        torch.testing.assert_close(saved[k], v, rtol=0, atol=1e-6)
    assert saved._metadata["c_attn"][lora.MERGED_KEY] is True
    assert not torch.allclose(saved["c_attn.weight"], state["c_attn.weight"])


@pytest.mark.parametrize("save_training", [True, False])
@pytest.mark.parametrize("load_training", [True, False])
def test_loralib_full_state_dict_reads_as_loralib_reads_it(tmp_path, save_training, load_training):
    """loralib's dicts do not say whether they are merged: ours reads them as loralib does, so a user
    switching libraries gets the same outputs from the same file (loralib's own double ΔW included)."""
    source = composite(loralib)
    source.load_state_dict(random_state(source, 3))
    source.train(save_training)
    torch.save(source.state_dict(), tmp_path / "loralib.pt")
    theirs, ours = composite(loralib).train(load_training), composite(lora).train(load_training)
    for model in (theirs, ours):
        model.load_state_dict(torch.load(tmp_path / "loralib.pt", weights_only=True))
    for mode in (load_training, not load_training, load_training):
        torch.testing.assert_close(outputs(ours, NET_IDS, mode), outputs(theirs, NET_IDS, mode), rtol=1e-5, atol=1e-5)


def test_enable_lora_as_slice_numbers_reads_as_loralib():
    """loralib indexes the slices with enable_lora: [1, 0, 1] means slices 1 and 0 (not 0 and 2)."""
    theirs, ours = _pair("MergedLinear", 8, 12, r=2, lora_alpha=3, enable_lora=[1, 0, 1])
    assert ours.enable_lora == [True, True, False]
    _check_cycles(theirs, ours, float64_input(2, 3, 8))
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


def test_public_names():
    for name in ("LoRALayer", "Embedding", "Linear", "MergedLinear", "ConvLoRA", "Conv1d", "Conv2d",
                 "Conv3d", "mark_only_lora_as_trainable", "lora_state_dict", "merge", "unmerge"):
        assert hasattr(lora, name), name
    defined_by_loralib = {n for n, o in vars(loralib).items() if getattr(o, "__module__", "").startswith("loralib")}
    assert defined_by_loralib and defined_by_loralib <= set(lora.__all__)
