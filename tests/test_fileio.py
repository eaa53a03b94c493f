"""gpt2_lora.fileio: the output guards every CLI shares (an output that is a directory, lies below a file, is
one of the inputs, or is another output is refused in one line before any work, and the input stays intact),
atomic writes of one file or of a set, and strict input reads. The CLIs' own use of the guards is tested beside
each CLI (test_beam, test_decode, test_eval_scripts, ...)."""

from __future__ import annotations

import pytest

from gpt2_lora.errors import UserError
from gpt2_lora.fileio import atomic_files, atomic_write, check_outputs


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


def test_a_directory_given_as_an_input_file_says_so(tmp_path):
    from gpt2_lora.fileio import read_text

    with pytest.raises(UserError, match=r"--data .*: is a directory, not a file"):
        read_text(tmp_path, "--data")
    with pytest.raises(UserError, match="--data not found"):
        read_text(tmp_path / "missing.jsonl", "--data")


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
