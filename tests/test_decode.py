"""gpt2_lora.decode: layouts checked by hand on a small case, one-line errors, and the output guards (no output
over an input or over another output). Byte-identical files to upstream gpt2_decode.py on the real test sets:
tests/parity/test_decode_upstream.py."""

from __future__ import annotations

import json

import pytest

from gpt2_lora import decode
from helpers import one_line_error, write_jsonl

EOS, BLANK = 50256, 628  # <|endoftext|>, "\n\n"


def test_e2e_layout_by_hand(tmp_path, tokenizer, vocab_dir):
    lines = [
        {"context": "name : A", "completion": "A is  nice . <|endoftext|> junk"},
        {"context": "name : B", "completion": "B is here.\n\nsecond paragraph"},
        {"context": "name : A", "completion": " A again "},
    ]
    write_jsonl(tmp_path / "in.jsonl", lines)
    pad = [0] * 5
    samples = [  # line 2 comes last and wins for context A; stray ids after EOS are ignored
        {"id": 0, "predict": tokenizer.encode(" first") + [EOS] + pad},
        {"id": 1, "predict": tokenizer.encode(" Hi (there)") + [BLANK] + tokenizer.encode("x") + pad},
        {"id": 2, "predict": tokenizer.encode(" Its Place, OK") + [EOS] + pad},
    ]
    write_jsonl(tmp_path / "pred.jsonl", samples)
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
    write_jsonl(tmp_path / "in.jsonl", lines)
    write_jsonl(tmp_path / "pred.jsonl", [{"id": i, "predict": tokenizer.encode(f" h{i}") + [EOS]} for i in range(5)])

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
    write_jsonl(tmp_path / "in.jsonl", [{"context": "a", "completion": "b"}, {"context": "c", "completion": "d"}])
    write_jsonl(tmp_path / "pred.jsonl", [{"id": 0, "predict": [64]}])
    with pytest.raises(SystemExit) as err:
        decode.main(["--vocab", str(vocab_dir), "--sample_file", str(tmp_path / "pred.jsonl"), "--input_file",
                     str(tmp_path / "in.jsonl"), "--output_ref_file", str(tmp_path / "r"),
                     "--output_pred_file", str(tmp_path / "h")])
    assert err.value.code == 2 and "no prediction for --input_file line 2" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_filter_without_cate_names_the_line(tmp_path, vocab_dir, capsys):
    write_jsonl(tmp_path / "in.jsonl", [{"context": "a", "completion": "b"}])
    write_jsonl(tmp_path / "pred.jsonl", [{"id": 0, "predict": [64]}])
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


def test_decode_refuses_outputs_that_are_inputs_or_each_other(tmp_path, capsys, vocab_dir):
    (tmp_path / "in.jsonl").write_text(json.dumps({"context": "a", "completion": "b"}) + "\n")
    (tmp_path / "pred.jsonl").write_text(json.dumps({"id": 0, "predict": [64]}) + "\n")
    base = ["--vocab", str(vocab_dir), "--sample_file", str(tmp_path / "pred.jsonl"),
            "--input_file", str(tmp_path / "in.jsonl")]
    one_line_error(decode.main, base + ["--output_ref_file", str(tmp_path / "r"), "--output_pred_file",
                                        str(tmp_path / "pred.jsonl")], capsys, "is the --sample_file file")
    one_line_error(decode.main, base + ["--output_ref_file", str(tmp_path / "y"), "--output_pred_file",
                                        str(tmp_path / "y")], capsys, "are the same file")
    (tmp_path / "refs_file").write_text("x")
    one_line_error(decode.main, base + ["--ref_type", "webnlg", "--output_ref_file", str(tmp_path / "refs_file"),
                                        "--output_pred_file", str(tmp_path / "h")], capsys,
                   "writes reference0.. into a folder")
    assert (tmp_path / "pred.jsonl").read_text() == json.dumps({"id": 0, "predict": [64]}) + "\n"
    assert not (tmp_path / "h").exists() and not (tmp_path / "y").exists()


def test_decode_refuses_booleans_among_predicted_ids(tmp_path, capsys, vocab_dir):
    (tmp_path / "in.jsonl").write_text(json.dumps({"context": "a", "completion": "b"}) + "\n")
    (tmp_path / "pred.jsonl").write_text(json.dumps({"id": 0, "predict": [64, True]}) + "\n")
    one_line_error(decode.main, ["--vocab", str(vocab_dir), "--sample_file", str(tmp_path / "pred.jsonl"),
                                 "--input_file", str(tmp_path / "in.jsonl"), "--output_ref_file", str(tmp_path / "r"),
                                 "--output_pred_file", str(tmp_path / "h")], capsys, "pred.jsonl:1: 'predict' holds")
