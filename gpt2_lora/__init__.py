"""gpt2-lora: the GPT-2 half of the LoRA paper (Hu et al., 2021), fast and faithful."""

__version__ = "0.1.0"
