"""gpt2_lora.decode: layouts checked by hand on a small case, and byte-identical files to upstream
gpt2_decode.py (run from a temporary copy) on the real E2E, WebNLG and DART test sets."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2_lora import data, decode
from conftest import UPSTREAM_NLG_SRC

UPSTREAM_SRC = UPSTREAM_NLG_SRC
EOS, BLANK = 50256, 628  # <|endoftext|>, "\n\n"


def _write(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_e2e_layout_by_hand(tmp_path, tokenizer, vocab_dir):
    lines = [
        {"context": "name : A", "completion": "A is  nice . <|endoftext|> junk"},
        {"context": "name : B", "completion": "B is here.\n\nsecond paragraph"},
        {"context": "name : A", "completion": " A again "},
    ]
    _write(tmp_path / "in.jsonl", lines)
    pad = [0] * 5
    samples = [  # line 2 comes last and wins for context A; stray ids after EOS are ignored
        {"id": 0, "predict": tokenizer.encode(" first") + [EOS] + pad},
        {"id": 1, "predict": tokenizer.encode(" Hi (there)") + [BLANK] + tokenizer.encode("x") + pad},
        {"id": 2, "predict": tokenizer.encode(" Its Place, OK") + [EOS] + pad},
    ]
    _write(tmp_path / "pred.jsonl", samples)
    args = ["--vocab", str(vocab_dir), "--sample_file", str(tmp_path / "pred.jsonl"), "--input_file",
            str(tmp_path / "in.jsonl"), "--output_ref_file", str(tmp_path / "ref.txt"), "--output_pred_file",
            str(tmp_path / "hyp.txt")]
    assert decode.main(args) == 0
    assert (tmp_path / "ref.txt").read_text() == "A is  nice .\nA again\n\nB is here.\n\n"
    assert (tmp_path / "hyp.txt").read_text() == "Its Place, OK\nHi (there)\n"
    assert decode.main(args + ["--tokenize", "--lower"]) == 0
    assert (tmp_path / "ref.txt").read_text() == "a is nice .\na again\n\nb is here .\n\n"
    assert (tmp_path / "hyp.txt").read_text() == "its place , ok\nhi ( there )\n"


def test_webnlg_layout_pads_with_first_reference_and_filters(tmp_path, tokenizer, vocab_dir):
    lines = [
        {"context": "x : p : y", "completion": "r1", "cate": True},
        {"context": "u : q : v", "completion": "s1", "cate": False},
        {"context": "x : p : y", "completion": "r2", "cate": True},
        {"context": "u : q : v", "completion": "s2", "cate": False},
        {"context": "u : q : v", "completion": "s3", "cate": False},
    ]
    _write(tmp_path / "in.jsonl", lines)
    _write(tmp_path / "pred.jsonl", [{"id": i, "predict": tokenizer.encode(f" h{i}") + [EOS]} for i in range(5)])

    def run(filter_):
        out = tmp_path / filter_
        assert decode.main(["--vocab", str(vocab_dir), "--sample_file", str(tmp_path / "pred.jsonl"),
                            "--input_file", str(tmp_path / "in.jsonl"), "--ref_type", "webnlg", "--ref_num", "4",
                            "--output_ref_file", str(out / "refs"), "--output_pred_file", str(out / "hyp"),
                            "--filter", filter_]) == 0
        return [(out / "refs" / f"reference{k}").read_text() for k in range(4)], (out / "hyp").read_text()

    assert run("all") == (["r1\ns1\n", "r2\ns2\n", "r1\ns3\n", "r1\ns1\n"], "h2\nh4\n")
    assert run("seen") == (["r1\n", "r2\n", "r1\n", "r1\n"], "h2\n")
    assert run("unseen") == (["s1\n", "s2\n", "s3\n", "s1\n"], "h4\n")


def test_missing_prediction_is_a_one_line_error(tmp_path, vocab_dir, capsys):
    _write(tmp_path / "in.jsonl", [{"context": "a", "completion": "b"}, {"context": "c", "completion": "d"}])
    _write(tmp_path / "pred.jsonl", [{"id": 0, "predict": [64]}])
    with pytest.raises(SystemExit) as err:
        decode.main(["--vocab", str(vocab_dir), "--sample_file", str(tmp_path / "pred.jsonl"), "--input_file",
                     str(tmp_path / "in.jsonl"), "--output_ref_file", str(tmp_path / "r"),
                     "--output_pred_file", str(tmp_path / "h")])
    assert err.value.code == 2 and "no prediction for --input_file line 2" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_filter_without_cate_names_the_line(tmp_path, vocab_dir, capsys):
    _write(tmp_path / "in.jsonl", [{"context": "a", "completion": "b"}])
    _write(tmp_path / "pred.jsonl", [{"id": 0, "predict": [64]}])
    with pytest.raises(SystemExit) as err:
        decode.main(["--vocab", str(vocab_dir), "--sample_file", str(tmp_path / "pred.jsonl"), "--input_file",
                     str(tmp_path / "in.jsonl"), "--ref_type", "webnlg", "--filter", "seen",
                     "--output_ref_file", str(tmp_path / "r"), "--output_pred_file", str(tmp_path / "h")])
    assert err.value.code == 2 and "in.jsonl:1: --filter seen needs a 'cate' field" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--ref_num", "four"], "argument --ref_num: invalid int value: 'four'"),
    (["--ref_type", "xml"], "argument --ref_type: invalid choice: 'xml'"),
])
def test_bad_flag_is_one_line(capsys, flags, message):
    with pytest.raises(SystemExit) as err:
        decode.main(flags)
    lines = capsys.readouterr().err.splitlines()
    assert err.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {message}") and lines[0].endswith(" (see --help)")


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


def _upstream(tmp_path: Path, args: list[str]) -> None:
    if not (UPSTREAM_SRC / "gpt2_decode.py").is_file():
        pytest.skip("upstream microsoft/LoRA source not checked out")
    pytest.importorskip("regex")  # upstream encoder.py needs it
    code = tmp_path / "upstream"
    code.mkdir(exist_ok=True)
    for name in ("gpt2_decode.py", "encoder.py"):
        shutil.copy(UPSTREAM_SRC / name, code / name)
    subprocess.run([sys.executable, str(code / "gpt2_decode.py"), *args], check=True, cwd=code,
                   capture_output=True)


def _compare(tmp_path, examples, tokenizer, vocab_dir, flags, ref_files):
    _write(tmp_path / "input.jsonl", [json.loads(data.formatted_line(ex)) for ex in examples])
    _write(tmp_path / "pred.jsonl", _fake_predictions(examples, tokenizer, seed=len(examples)))
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
            _upstream(tmp_path, args)
        outputs[who] = {name: (out / name).read_bytes() for name in ["pred.txt", *ref_files]}
    assert outputs["ours"] == outputs["upstream"]
    return outputs["ours"]


@pytest.mark.shared_data
def test_e2e_byte_identical_to_upstream(tmp_path, shared_data, tokenizer, vocab_dir):
    examples = data.read_e2e(shared_data / "e2e" / "test.txt")
    files = _compare(tmp_path, examples, tokenizer, vocab_dir, [], ["ref"])
    assert files["pred.txt"].count(b"\n") == 630  # one hypothesis per distinct MR


@pytest.mark.shared_data
@pytest.mark.parametrize("filter_, groups", [("all", 1862), ("seen", 971), ("unseen", 891)])
def test_webnlg_byte_identical_to_upstream(tmp_path, shared_data, tokenizer, vocab_dir, filter_, groups):
    examples = data.read_webnlg(shared_data / "webnlg_challenge_2017" / "test.json")
    refs = [f"ref/reference{k}" for k in range(6)]
    files = _compare(tmp_path, examples, tokenizer, vocab_dir,
                     ["--ref_type", "webnlg", "--ref_num", "6", "--tokenize", "--lower", "--filter", filter_], refs)
    assert files["pred.txt"].count(b"\n") == groups


@pytest.mark.shared_data
def test_dart_byte_identical_to_upstream(tmp_path, shared_data, tokenizer, vocab_dir):
    examples = data.read_dart(shared_data / "dart" / "dart-v1.1.1-full-test.json")
    refs = [f"ref/reference{k}" for k in range(6)]
    files = _compare(tmp_path, examples, tokenizer, vocab_dir,
                     ["--ref_type", "dart", "--ref_num", "6", "--tokenize", "--lower"], refs)
    assert files["pred.txt"].count(b"\n") == 4159  # distinct DART test contexts (data/README.md)
