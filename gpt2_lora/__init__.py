"""gpt2-lora: the GPT-2 half of the LoRA paper (Hu et al., 2021), fast and faithful.

``gpt2_lora.load(...)`` and ``gpt2_lora.generate_text(...)`` (the notebook API, see README) are imported on
first use, so ``import gpt2_lora`` stays light (no torch).
"""

__version__ = "0.1.0"

_LAZY = {"load": "loading", "generate_text": "generate"}
__all__ = ["load", "generate_text", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
