"""Output guards shared by every CLI: an output that is a directory, lies below a file, is one of the
inputs, or is another output is refused in one line before any work, and the input stays intact."""

from __future__ import annotations

import importlib.util
import json

import pytest

from gpt2_lora import beam, decode
from gpt2_lora.errors import UserError
from gpt2_lora.fileio import atomic_files, atomic_write, check_outputs
from conftest import ROOT


def test_check_outputs_refuses_each_kind_of_bad_output(tmp_path):
    data = tmp_path / "in.txt"
    data.write_text("keep me\n")
    (tmp_path / "folder").mkdir()
    check_outputs({"--out": tmp_path / "new" / "out.txt"}, {"--in": data})  # fine: the folder is made later
    cases = [
        ({"--out": tmp_path / "folder"}, {}, "is a directory"),
        ({"--out": ""}, {}, "is a directory"),
        ({"--out": data / "x.txt"}, {}, "in.txt is a file, not a folder"),
        ({"--out": tmp_path / "sub" / ".." / "in.txt"}, {"--in": data}, "is the --in file"),
        ({"--a": tmp_path / "o.txt", "--b": tmp_path / "o.txt"}, {}, "--b and --a are the same file"),
    ]
    for outputs, inputs, message in cases:
        with pytest.raises(UserError, match=message):
            check_outputs(outputs, inputs)
    assert data.read_text() == "keep me\n"


def test_atomic_write_into_a_directory_is_a_user_error(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError, match="is a directory"):
        with atomic_write(tmp_path / "d") as handle:
            handle.write("x")
    with pytest.raises(UserError):
        with atomic_write(tmp_path / "d" / "f" / "g"):  # fine folder, then:
            pass
        with atomic_write(tmp_path / "d" / "f" / "g" / "h"):  # below a file
            pass


def _fails(main, argv, capsys, message):
    with pytest.raises(SystemExit) as err:
        main(argv)
    text = capsys.readouterr().err.strip()
    assert err.value.code == 2 and text.startswith("error: ") and "\n" not in text and message in text, text


def test_beam_refuses_to_write_over_its_data(tmp_path, capsys):
    data = tmp_path / "test.jsonl"
    data.write_text('{"context": [1, 2], "completion": [3]}\n')
    before = data.read_bytes()
    _fails(beam.main, ["--data", str(data), "--device", "cpu", "--work_dir", str(tmp_path),
                       "--output_file", "test.jsonl"], capsys, "is the --data file")
    _fails(beam.main, ["--data", str(data), "--device", "cpu", "--work_dir", str(tmp_path),
                       "--output_file", "."], capsys, "is a directory")
    assert data.read_bytes() == before


def test_decode_refuses_outputs_that_are_inputs_or_each_other(tmp_path, capsys, vocab_dir):
    (tmp_path / "in.jsonl").write_text(json.dumps({"context": "a", "completion": "b"}) + "\n")
    (tmp_path / "pred.jsonl").write_text(json.dumps({"id": 0, "predict": [64]}) + "\n")
    base = ["--vocab", str(vocab_dir), "--sample_file", str(tmp_path / "pred.jsonl"),
            "--input_file", str(tmp_path / "in.jsonl")]
    _fails(decode.main, base + ["--output_ref_file", str(tmp_path / "r"), "--output_pred_file",
                                str(tmp_path / "pred.jsonl")], capsys, "is the --sample_file file")
    _fails(decode.main, base + ["--output_ref_file", str(tmp_path / "y"), "--output_pred_file",
                                str(tmp_path / "y")], capsys, "are the same file")
    (tmp_path / "refs_file").write_text("x")
    _fails(decode.main, base + ["--ref_type", "webnlg", "--output_ref_file", str(tmp_path / "refs_file"),
                                "--output_pred_file", str(tmp_path / "h")], capsys, "writes reference0.. into a folder")
    assert (tmp_path / "pred.jsonl").read_text() == json.dumps({"id": 0, "predict": [64]}) + "\n"
    assert not (tmp_path / "h").exists() and not (tmp_path / "y").exists()


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "eval" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scorers_refuse_json_over_an_input(tmp_path, capsys):
    refs, hyps = tmp_path / "refs.txt", tmp_path / "hyps.txt"
    refs.write_text("a b c\n\nd e f\n")
    hyps.write_text("a b c\nd e f\n")
    _fails(_script("measure_scores").main, [str(refs), str(hyps), "--json", str(refs)], capsys, "is the REFS file")
    assert refs.read_text() == "a b c\n\nd e f\n"
    ref0 = tmp_path / "ref0"
    ref0.write_text("a b c\n")
    _fails(_script("eval").main, ["-R", str(tmp_path / "ref"), "-H", str(hyps), "-nr", "1", "--json",
                                  str(hyps)], capsys, "is the -H file")
    _fails(_script("eval").main, ["-R", str(tmp_path / "ref"), "-H", str(hyps), "-nr", "1", "--json",
                                  str(tmp_path)], capsys, "is a directory")
    assert hyps.read_text() == "a b c\nd e f\n"


def test_a_directory_given_as_an_input_file_says_so(tmp_path):
    from gpt2_lora.fileio import read_text

    with pytest.raises(UserError, match=r"--data .*: is a directory, not a file"):
        read_text(tmp_path, "--data")
    with pytest.raises(UserError, match="--data not found"):
        read_text(tmp_path / "missing.jsonl", "--data")


def test_decode_refuses_booleans_among_predicted_ids(tmp_path, capsys, vocab_dir):
    (tmp_path / "in.jsonl").write_text(json.dumps({"context": "a", "completion": "b"}) + "\n")
    (tmp_path / "pred.jsonl").write_text(json.dumps({"id": 0, "predict": [64, True]}) + "\n")
    _fails(decode.main, ["--vocab", str(vocab_dir), "--sample_file", str(tmp_path / "pred.jsonl"), "--input_file",
                         str(tmp_path / "in.jsonl"), "--output_ref_file", str(tmp_path / "r"),
                         "--output_pred_file", str(tmp_path / "h")], capsys, "pred.jsonl:1: 'predict' holds")


def test_atomic_files_put_all_or_none_in_place(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b.txt"
    a.write_text("old a")
    with pytest.raises(RuntimeError):
        with atomic_files([a, b]) as (fa, fb):
            fa.write("new a")
            fb.write("new b")
            raise RuntimeError("the second file failed")
    assert a.read_text() == "old a" and not b.exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.txt"]  # no temp files left
    with atomic_files([a, b]) as (fa, fb):
        fa.write("new a")
        fb.write("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")


def test_atomic_files_put_the_old_files_back_when_a_rename_fails(tmp_path, monkeypatch):
    import os

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    real_replace, calls = os.replace, []

    def failing_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2 and str(dst) == str(b):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_second_rename)
    with pytest.raises(UserError, match="cannot write .*b.txt: No space left on device"):
        with atomic_files([a, b]) as (fa, fb):
            fa.write("new a")
            fb.write("new b")
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]  # no temp or backup files


def test_the_same_file_twice_in_one_set_is_refused(tmp_path):
    with pytest.raises(UserError, match="same file"):
        with atomic_files([tmp_path / "a.txt", tmp_path / "a.txt"]):
            pass
