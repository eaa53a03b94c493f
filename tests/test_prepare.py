"""The prepare CLI: layout, idempotency, atomic failure, synthetic, and the download script. Byte parity with
upstream's scripts: tests/parity/test_prepare_upstream.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gpt2_lora import data, prepare
from gpt2_lora.errors import UserError
from helpers import PREPARED_FILES, ROOT

E2E_LINE = "name : Alimentum | area : city centre | family friendly : no||There is a place in the city centre . \n"


def _e2e_source(folder: Path, lines: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in data.SOURCE_FILES["e2e"].values():
        (folder / name).write_text(E2E_LINE * lines, encoding="utf-8")
    return folder


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".txt"))


def test_layout_and_contents(tmp_path, vocab_dir):
    src = _e2e_source(tmp_path / "e2e")
    out = tmp_path / "out"
    assert prepare.main(["--task", "e2e", "--src", str(src), "--out", str(out), "--vocab", str(vocab_dir)]) == 0
    assert _listing(out) == sorted([*PREPARED_FILES, prepare.STAMP_NAME])
    formatted = (out / "test_formatted.jsonl").read_text().splitlines()
    assert formatted == ['{"context": "name : Alimentum | area : city centre | family friendly : no", '
                         '"completion": "There is a place in the city centre ."}'] * 3
    encoded = [json.loads(line) for line in (out / "valid.jsonl").read_text().splitlines()]
    # hand-checked with upstream gpt2_encode.py: " There is a place in the city centre ." + eos
    assert encoded[0]["completion"] == [1318, 318, 257, 1295, 287, 262, 1748, 7372, 764, 50256]
    assert encoded[0]["context"][-1] == 50256 and len(encoded) == 3


def test_idempotent_and_redone_when_sources_change(tmp_path, vocab_dir):
    src = _e2e_source(tmp_path / "e2e")
    args = ["--task", "e2e", "--src", str(src), "--vocab", str(vocab_dir)]  # --out defaults to the source dir
    assert prepare.run(prepare.parse_args(args)) is True
    before = {name: (src / name).stat().st_mtime_ns for name in PREPARED_FILES}
    assert prepare.run(prepare.parse_args(args)) is False  # up to date: nothing rewritten
    assert {name: (src / name).stat().st_mtime_ns for name in PREPARED_FILES} == before
    (src / "valid.txt").write_text(E2E_LINE * 5, encoding="utf-8")  # a changed source is noticed
    assert prepare.run(prepare.parse_args(args)) is True
    assert len((src / "valid.jsonl").read_text().splitlines()) == 5
    assert prepare.run(prepare.parse_args(args + ["--force"])) is True
    (src / "test.jsonl").unlink()  # a missing output is noticed
    assert prepare.run(prepare.parse_args(args)) is True and (src / "test.jsonl").is_file()


def test_bad_input_leaves_out_untouched(tmp_path, vocab_dir, capsys):
    src = _e2e_source(tmp_path / "e2e")
    (src / "test.txt").write_text(E2E_LINE + "broken line without separator\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--task", "e2e", "--src", str(src), "--out", str(out), "--vocab", str(vocab_dir)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {src / 'test.txt'}:2: no '||' between MR and reference (expected MR||reference)"]
    assert not out.exists() or list(out.iterdir()) == []


def test_read_only_source_folder_is_not_written_into(tmp_path, vocab_dir, capsys):
    src = _e2e_source(tmp_path / "mirror" / "e2e")
    src.chmod(0o555)  # like ../shared/data; root would still be able to write, hence the explicit check
    try:
        with pytest.raises(SystemExit) as exit_info:
            prepare.main(["--task", "e2e", "--src", str(src), "--vocab", str(vocab_dir)])
        assert exit_info.value.code == 2
        assert "read-only" in capsys.readouterr().err and _listing(src) == []
        out = tmp_path / "out"  # --out elsewhere works
        assert prepare.main(["--task", "e2e", "--src", str(src), "--out", str(out), "--vocab", str(vocab_dir)]) == 0
    finally:
        src.chmod(0o755)


def test_interrupted_write_leaves_no_partial_file(tmp_path, vocab_dir, monkeypatch):
    src = _e2e_source(tmp_path / "e2e")
    out = tmp_path / "out"

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "encode_examples", explode)
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare_task("e2e", src, out, vocab_dir)
    # the layers go in place together: nothing at all (no formatted file without its encoding, no temp
    # files, no stamp), and an earlier complete set is left as it was
    assert list(out.iterdir()) == []
    monkeypatch.undo()
    prepare.prepare_task("e2e", src, out, vocab_dir)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(data, "encode_examples", explode)
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare_task("e2e", src, out, vocab_dir, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {k: v for k, v in before.items() if k != prepare.STAMP_NAME}


@pytest.mark.parametrize("argv, message", [
    (["--task", "e2e"], "--task e2e: --src DIR is required"),
    (["--task", "dart", "--src", "/nonexistent/dir"], "--src /nonexistent/dir: no such directory"),
    (["--task", "synthetic"], "--task synthetic: pass --out DIR"),
    (["--task", "synthetic", "--out", "x", "--synthetic_sizes", "5,0,1"], "--synthetic_sizes 5,0,1: expected three"),
])
def test_cli_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_synthetic_cli(tmp_path, vocab_dir):
    out = tmp_path / "syn"
    args = ["--task", "synthetic", "--out", str(out), "--vocab", str(vocab_dir), "--synthetic_sizes", "40,6,4"]
    assert prepare.run(prepare.parse_args(args)) is True
    assert sorted(p.name for p in out.iterdir()) == sorted([*PREPARED_FILES, prepare.STAMP_NAME, prepare.SYNTHETIC_MARKER,
                                                            "train.txt", "valid.txt", "test.txt"])
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert prepare.run(prepare.parse_args(args)) is False  # idempotent
    assert prepare.run(prepare.parse_args(args + ["--random_seed", "1"])) is True  # new options: redone
    assert (out / "train.txt").read_bytes() != first["train.txt"]
    assert prepare.run(prepare.parse_args(args)) is True  # and back: same bytes as the first time
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != prepare.STAMP_NAME} == \
        {k: v for k, v in first.items() if k != prepare.STAMP_NAME}
    contexts = {json.loads(line)["context"] for line in (out / "train_formatted.jsonl").read_text().splitlines()}
    assert len(contexts) == 40


def test_synthetic_never_overwrites_real_sources(tmp_path, vocab_dir):
    real = tmp_path / "real"
    real.mkdir()
    (real / "test.txt").write_text("name[A]||A is a real reference .\n")
    with pytest.raises(UserError, match="test.txt not written by --task synthetic"):
        prepare.run(prepare.parse_args(["--task", "synthetic", "--out", str(real), "--vocab", str(vocab_dir)]))
    assert (real / "test.txt").read_text() == "name[A]||A is a real reference .\n"
    assert sorted(p.name for p in real.iterdir()) == ["test.txt"]


def test_synthetic_folder_of_an_older_version_is_recognised_by_its_stamp(tmp_path, vocab_dir):
    out = tmp_path / "syn"
    args = ["--task", "synthetic", "--out", str(out), "--vocab", str(vocab_dir), "--synthetic_sizes", "20,4,4"]
    prepare.run(prepare.parse_args(args))
    (out / prepare.SYNTHETIC_MARKER).unlink()  # as written before the marker existed
    assert prepare.run(prepare.parse_args(args + ["--random_seed", "2"])) is True


def test_synthetic_sizes_are_capped():
    with pytest.raises(UserError, match="at most 100,000"):
        data.synthetic_source({"train": 100_000_000, "valid": 2, "test": 2})


# --------------------------------------------------------------------------------------- download script
SCRIPT = ROOT / "scripts" / "download_data.sh"


def _run_script(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True)


def test_download_mirror_file_missing(tmp_path):
    (tmp_path / "mirror").mkdir()
    result = _run_script("--mirror", str(tmp_path / "mirror"), "--no-prepare", str(tmp_path / "dest"))
    assert result.returncode == 2
    assert result.stderr == f"error: mirror file missing: {tmp_path / 'mirror' / 'e2e' / 'train.txt'}\n"


def test_download_hash_mismatch_names_file_and_hashes(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "e2e").mkdir(parents=True)
    (mirror / "e2e" / "train.txt").write_bytes(b"garbage\n")
    result = _run_script("--mirror", str(mirror), "--no-prepare", str(tmp_path / "dest"))
    assert result.returncode == 2
    # sha256 and `git hash-object` of the bad file, computed independently
    sha, blob = hashlib.sha256(b"garbage\n").hexdigest(), hashlib.sha1(b"blob 8\0garbage\n").hexdigest()
    assert result.stderr == (
        f"error: hash mismatch for e2e/train.txt from {mirror / 'e2e' / 'train.txt'}: expected sha256 "
        "eae319082237310913d9f37f6a891d48fb3f821f29d86870d2cb4f92ddd72c5a or git blob "
        "2f92a2790c00a48574dcc89465a326f33d7e7cc6, got sha256 "
        f"{sha} (git blob {blob})\n")
    assert [p.name for p in (tmp_path / "dest" / "e2e").iterdir()] == []  # no partial file left behind


def test_download_hashes_match_the_data_readme(shared_data):
    # the script's table must be the README's table (sha256 per file)
    readme = (shared_data / "README.md").read_text(encoding="utf-8")
    script = SCRIPT.read_text(encoding="utf-8")
    rows = [line.split("|") for line in readme.splitlines() if line.startswith("| ") and "/" in line.split("|")[1]]
    documented = {row[1].strip(): row[4].strip() for row in rows if len(row) > 5 and len(row[4].strip()) == 64}
    assert len(documented) == 11
    table = {line.split()[0]: line.split()[1] for line in script.splitlines()
             if len(line.split()) == 3 and line.split()[0] in documented}
    assert table == documented
