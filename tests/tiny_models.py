"""Tiny random GPT-2s for the loading / generate / export tests: an HF base written by transformers'
save_pretrained, and LoRA adapters of ours over it (with a nonzero B, so the adapter changes the outputs)."""

from __future__ import annotations

from pathlib import Path

import torch

from gpt2_lora.checkpoint import describe_weights, load_checkpoint_file, lora_only_state_dict, save_weights
from gpt2_lora.model import GPT2Config, GPT2LMModel

TINY = dict(vocab_size=96, n_positions=64, n_embd=32, n_layer=2, n_head=4)


def hf_base(path: Path, seed: int = 0, **sizes) -> Path:
    """A random transformers GPT2LMHeadModel (no dropout; biases and LayerNorms perturbed so they matter),
    saved with save_pretrained into ``path``."""
    import transformers

    sizes = {**TINY, **sizes}
    torch.manual_seed(seed)
    config = transformers.GPT2Config(**sizes, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                     bos_token_id=sizes["vocab_size"] - 1, eos_token_id=sizes["vocab_size"] - 1)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(path)
    return path


def lora_model(base_dir: Path, r: int = 2, alpha: int = 8, slices: str = "qv", seed: int = 1,
               std: float = 0.3) -> GPT2LMModel:
    """Our model over ``base_dir`` with random LoRA A and B (unmerged, eval mode)."""
    config = GPT2Config.from_hf_config(base_dir, lora_attn_dim=r, lora_attn_alpha=alpha, lora_attn_slices=slices)
    model = GPT2LMModel(config)
    model.load_weight(load_checkpoint_file(base_dir))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * std)
    return model.eval()


def save_adapter(model: GPT2LMModel, path: Path, base: Path | None, metadata: bool = True) -> Path:
    """The model's LoRA weights as training writes them (with its description unless ``metadata`` is False)."""
    meta = describe_weights(model.config, lora_dropout=0.0, model_card=None, base_checkpoint=base) if metadata else None
    return save_weights(lora_only_state_dict(model), path, meta)


def ids(vocab_size: int = TINY["vocab_size"], shape=(3, 12), seed: int = 2) -> torch.Tensor:
    return torch.randint(0, vocab_size, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def our_logits(model: GPT2LMModel, tokens: torch.Tensor) -> torch.Tensor:
    return model.float()(tokens)
