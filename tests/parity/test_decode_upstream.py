"""gpt2_lora.decode against upstream gpt2_decode.py (run from a temporary copy of the microsoft/LoRA checkout):
byte-identical reference and hypothesis files on the real E2E, WebNLG and DART test sets."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2_lora import data, decode
from helpers import write_jsonl

pytestmark = pytest.mark.upstream
EOS, BLANK = 50256, 628  # <|endoftext|>, "\n\n"


# --------------------------------------------------------------------- upstream, on the real test sets
def _fake_predictions(examples, tokenizer, seed: int) -> list[dict]:
    """One prediction per line, padded to 64 ids like beam output: the reference itself, some cut by a
    blank line, some without EOS, some running past an EOS; repeated contexts get different ones."""
    rng = random.Random(seed)
    records = []
    for i, ex in enumerate(examples):
        ids = tokenizer.encode(" " + ex.completion)[:60]
        kind = rng.randrange(4)
        if kind == 1:
            ids = ids[:10] + [BLANK] + ids[10:]
        if kind != 2:
            ids = ids + [EOS] + ids[:3]
        records.append({"id": i, "predict": (ids + [0] * 64)[:64]})
    return records


def _upstream(upstream, tmp_path: Path, args: list[str]) -> None:
    pytest.importorskip("regex")  # upstream encoder.py needs it
    code = upstream.copy(tmp_path / "upstream", "gpt2_decode.py", "encoder.py")
    subprocess.run([sys.executable, str(code / "gpt2_decode.py"), *args], check=True, cwd=code,
                   capture_output=True)


def _compare(upstream, tmp_path, examples, tokenizer, vocab_dir, flags, ref_files):
    write_jsonl(tmp_path / "input.jsonl", [json.loads(data.formatted_line(ex)) for ex in examples])
    write_jsonl(tmp_path / "pred.jsonl", _fake_predictions(examples, tokenizer, seed=len(examples)))
    outputs = {}
    for who in ("ours", "upstream"):
        out = tmp_path / who
        args = ["--vocab", str(vocab_dir), "--sample_file", str(tmp_path / "pred.jsonl"), "--input_file",
                str(tmp_path / "input.jsonl"), "--output_ref_file", str(out / "ref"), "--output_pred_file",
                str(out / "pred.txt"), *flags]
        out.mkdir()
        if who == "ours":
            assert decode.main(args) == 0
        else:
            _upstream(upstream, tmp_path, args)
        outputs[who] = {name: (out / name).read_bytes() for name in ["pred.txt", *ref_files]}
    assert outputs["ours"] == outputs["upstream"]
    return outputs["ours"]


@pytest.mark.shared_data
def test_e2e_byte_identical_to_upstream(upstream, tmp_path, shared_data, tokenizer, vocab_dir):
    examples = data.read_e2e(shared_data / "e2e" / "test.txt")
    files = _compare(upstream, tmp_path, examples, tokenizer, vocab_dir, [], ["ref"])
    assert files["pred.txt"].count(b"\n") == 630  # one hypothesis per distinct MR


@pytest.mark.shared_data
@pytest.mark.parametrize("filter_, groups", [("all", 1862), ("seen", 971), ("unseen", 891)])
def test_webnlg_byte_identical_to_upstream(upstream, tmp_path, shared_data, tokenizer, vocab_dir, filter_, groups):
    examples = data.read_webnlg(shared_data / "webnlg_challenge_2017" / "test.json")
    refs = [f"ref/reference{k}" for k in range(6)]
    files = _compare(upstream, tmp_path, examples, tokenizer, vocab_dir,
                     ["--ref_type", "webnlg", "--ref_num", "6", "--tokenize", "--lower", "--filter", filter_], refs)
    assert files["pred.txt"].count(b"\n") == groups


@pytest.mark.shared_data
def test_dart_byte_identical_to_upstream(upstream, tmp_path, shared_data, tokenizer, vocab_dir):
    examples = data.read_dart(shared_data / "dart" / "dart-v1.1.1-full-test.json")
    refs = [f"ref/reference{k}" for k in range(6)]
    files = _compare(upstream, tmp_path, examples, tokenizer, vocab_dir,
                     ["--ref_type", "dart", "--ref_num", "6", "--tokenize", "--lower"], refs)
    assert files["pred.txt"].count(b"\n") == 4159  # distinct DART test contexts (data/README.md)
