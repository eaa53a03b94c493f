"""gpt2_lora.stamps: when a step may be skipped."""

from __future__ import annotations

import os

from gpt2_lora import stamps


def _touch(path, mtime_ns):
    path.write_text(path.name)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_up_to_date_needs_the_same_value_every_output_and_no_newer_input(tmp_path):
    src, out_a, out_b, stamp = tmp_path / "src", tmp_path / "a", tmp_path / "b", tmp_path / "s.json"
    _touch(src, 1_000_000_000)
    _touch(out_a, 2_000_000_000)
    _touch(out_b, 2_000_000_000)
    assert not stamps.up_to_date(stamp, {"cmd": [1]}, [out_a, out_b], [src])  # no stamp yet
    stamps.write(stamp, {"cmd": [1]})
    assert stamps.read(stamp) == {"cmd": [1]}
    assert stamps.up_to_date(stamp, {"cmd": [1]}, [out_a, out_b], [src])
    assert not stamps.up_to_date(stamp, {"cmd": [2]}, [out_a, out_b], [src])  # another command
    _touch(src, 3_000_000_000)  # an input changed after the outputs were made
    assert not stamps.up_to_date(stamp, {"cmd": [1]}, [out_a, out_b], [src])
    _touch(src, 2_000_000_000)  # as old as the outputs: fine
    assert stamps.up_to_date(stamp, {"cmd": [1]}, [out_a, out_b], [src])
    out_b.unlink()
    assert not stamps.up_to_date(stamp, {"cmd": [1]}, [out_a, out_b], [src])
    stamps.clear(stamp)
    assert stamps.read(stamp) is None and not stamp.exists()


def test_unreadable_stamp_is_not_up_to_date(tmp_path):
    (tmp_path / "s.json").write_text("{not json")
    out = tmp_path / "out"
    out.write_text("x")
    assert stamps.read(tmp_path / "s.json") is None
    assert not stamps.up_to_date(tmp_path / "s.json", None, [out])


def test_stamp_dir_and_file_record(tmp_path):
    marks = stamps.StampDir(tmp_path / ".stamps")
    marks.write("train", ["a"])
    assert marks.path("train") == tmp_path / ".stamps" / "train.json" and marks.read("train") == ["a"]
    marks.clear("train", "never-written")
    assert marks.read("train") is None
    record = stamps.file_record(marks.path("train").parent)
    assert set(record) == {"path", "size", "mtime_ns"}
