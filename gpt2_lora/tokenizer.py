"""GPT-2 byte-level BPE through tiktoken, usable offline from an upstream-style ``vocab`` directory.

The upstream LoRA scripts take ``--vocab DIR`` holding ``encoder.json`` and ``vocab.bpe``; the same two
files build tiktoken's ``gpt2`` encoding here without any download. The sha256 of both files is checked
against the values tiktoken itself pins, so a wrong or truncated vocabulary is caught at once.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from .data import EOS_ID
from .errors import UserError

VOCAB_SIZE = 50257
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
# tiktoken's r50k/gpt2 split pattern (same tokens as OpenAI's original encoder.py regex)
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

DEFAULT_VOCAB_DIR = Path(__file__).resolve().parent.parent / "data" / "gpt2"


def find_vocab_dir(vocab_dir: str | os.PathLike | None = None) -> Path | None:
    """The vocab directory to use: the argument, else $GPT2_LORA_VOCAB, else ``data/gpt2`` if present."""
    if vocab_dir is not None:
        path = Path(vocab_dir)
        for name in ("encoder.json", "vocab.bpe"):
            if not (path / name).is_file():
                raise UserError(f"--vocab {path}: missing {name} (expected encoder.json and vocab.bpe)")
        return path
    env = os.environ.get("GPT2_LORA_VOCAB")
    if env:
        return find_vocab_dir(env)
    if (DEFAULT_VOCAB_DIR / "encoder.json").is_file() and (DEFAULT_VOCAB_DIR / "vocab.bpe").is_file():
        return DEFAULT_VOCAB_DIR
    return None


@functools.lru_cache(maxsize=4)
def _encoding_from_dir(vocab_dir: str) -> tiktoken.Encoding:
    try:
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(Path(vocab_dir) / "vocab.bpe"),
            encoder_json_file=str(Path(vocab_dir) / "encoder.json"),
            vocab_bpe_hash=VOCAB_BPE_SHA256,
            encoder_json_hash=ENCODER_JSON_SHA256,
        )
    except ValueError as err:  # tiktoken raises ValueError on a hash mismatch
        raise UserError(f"--vocab {vocab_dir}: not the official GPT-2 BPE files ({err})") from None
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": EOS_ID},
        explicit_n_vocab=VOCAB_SIZE,
    )


def get_encoding(vocab_dir: str | os.PathLike | None = None) -> tiktoken.Encoding:
    """GPT-2's encoding: from a local vocab dir when one is found, else tiktoken's (downloads once)."""
    found = find_vocab_dir(vocab_dir)
    if found is not None:
        return _encoding_from_dir(str(found.resolve()))
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as err:  # network failure surfaces as many exception types
        raise UserError(
            "GPT-2 BPE files not found and could not be downloaded "
            f"({type(err).__name__}); run scripts/download_data.sh or pass --vocab DIR"
        ) from None


class Tokenizer:
    """Thin wrapper with the two calls the pipeline needs; ``<|endoftext|>`` is encoded as text is."""

    def __init__(self, vocab_dir: str | os.PathLike | None = None):
        self.encoding = get_encoding(vocab_dir)

    def encode(self, text: str) -> list[int]:
        # upstream's encoder.py treats every string as plain text; allow the special token too so that
        # "<|endoftext|>" maps to 50256 as users expect.
        return self.encoding.encode(text, allowed_special="all")

    def encode_ordinary(self, text: str) -> list[int]:
        """Exactly upstream ``encoder.encode``: no special tokens recognised."""
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int = 2) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(texts, num_threads=num_threads)

    def decode(self, ids) -> str:
        return self.encoding.decode(list(ids))
