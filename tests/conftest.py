"""Shared fixtures: where ../shared lives, the GPT-2 vocab, and skips for GPU / Java / shared data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GPT2_LORA_SHARED", ROOT.parent / "shared"))
SHARED_DATA = SHARED / "data"
METRICS_CASES = SHARED / "metrics-cases"

# microsoft/LoRA's examples/NLG/src, for the parity tests that run upstream's own code beside ours. Upstream code
# is never committed here: fetch microsoft/LoRA (commit c4593f06) and point GPT2_LORA_UPSTREAM at the checkout.
UPSTREAM_NLG_SRC = Path(os.environ.get("GPT2_LORA_UPSTREAM", "/tmp/up/microsoft+LoRA")) / "examples" / "NLG" / "src"

requires_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared is absent")
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
requires_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def metrics_cases() -> Path:
    if not METRICS_CASES.is_dir():
        pytest.skip("../shared/metrics-cases is absent")
    return METRICS_CASES


@pytest.fixture(scope="session")
def vocab_dir() -> Path:
    """The official GPT-2 BPE files: ../shared/data/gpt2 here, data/gpt2 after download_data.sh."""
    for candidate in (SHARED_DATA / "gpt2", ROOT / "data" / "gpt2"):
        if (candidate / "encoder.json").is_file():
            return candidate
    pytest.skip("GPT-2 BPE files not available")


@pytest.fixture(scope="session")
def tokenizer(vocab_dir):
    from gpt2_lora.tokenizer import Tokenizer

    return Tokenizer(vocab_dir)
