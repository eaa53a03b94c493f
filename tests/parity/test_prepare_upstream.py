"""prepare against upstream's own format_converting_*.py + gpt2_encode.py (run from a copy of the microsoft/LoRA
checkout): the same bytes in every file, on slices of the real E2E, WebNLG and DART sources."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2_lora import data, prepare
from helpers import PREPARED_FILES

pytestmark = pytest.mark.upstream


def _upstream_tools(upstream, tmp_path: Path) -> Path:
    pytest.importorskip("regex")  # upstream encoder.py needs it
    tools = upstream.copy(tmp_path / "upstream", "format_converting_e2e.py", "format_converting_webnlg.py",
                          "format_converting_dart.py", "gpt2_encode.py", "encoder.py")
    # gpt2_encode.py imports numpy, torch and progress.bar but uses none of them: empty stand-ins keep runs fast
    stand_ins = ("numpy", "progress/bar", "torch/nn/parallel", "torch/backends/cudnn", "torch/optim",
                 "torch/utils/data")
    for module in stand_ins:
        parts = module.split("/")
        for depth in range(1, len(parts) + 1):
            package = tools.joinpath(*parts[:depth])
            package.mkdir(exist_ok=True)
            (package / "__init__.py").write_text("Bar = None\n" if package.name == "bar" else "")
    return tools


def _slice_sources(shared: Path, dest: Path) -> None:
    """Small but varied slices of each real split (every 150th/40th/200th record), in the source formats."""
    (dest / "e2e").mkdir(parents=True)
    for name in data.SOURCE_FILES["e2e"].values():
        lines = (shared / "e2e" / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (dest / "e2e" / name).write_text("".join(lines[::150]), encoding="utf-8")
    (dest / "webnlg_challenge_2017").mkdir()
    for name in data.SOURCE_FILES["webnlg"].values():
        entries = json.loads((shared / "webnlg_challenge_2017" / name).read_text(encoding="utf-8"))["entries"]
        picked = [next(iter(e.values())) for e in entries[::40]]
        renumbered = {"entries": [{str(i + 1): e} for i, e in enumerate(picked)]}
        (dest / "webnlg_challenge_2017" / name).write_text(json.dumps(renumbered, ensure_ascii=False, indent=4))
    (dest / "dart").mkdir()
    for name in data.SOURCE_FILES["dart"].values():
        entries = json.loads((shared / "dart" / name).read_text(encoding="utf-8"))
        (dest / "dart" / name).write_text(json.dumps(entries[::200], indent=2))


def test_byte_parity_with_upstream_scripts(upstream, tmp_path, shared_data, vocab_dir):
    tools = _upstream_tools(upstream, tmp_path)
    src = tmp_path / "src"
    _slice_sources(shared_data, src)
    env = {**os.environ, "PYTHONPATH": str(tools)}
    converter = {"e2e": "e2e", "webnlg": "webnlg", "dart": "dart"}
    for task in data.READERS:
        ours = tmp_path / "ours" / task
        prepare.prepare_task(task, src, ours, vocab_dir)
        theirs = tmp_path / "theirs" / task
        theirs.mkdir(parents=True)
        for split, path in data.source_paths(task, src).items():
            formatted = theirs / f"{split}_formatted.jsonl"
            subprocess.run([sys.executable, tools / f"format_converting_{converter[task]}.py", path, formatted],
                           check=True, env=env, stdout=subprocess.DEVNULL)
            subprocess.run([sys.executable, "gpt2_encode.py", "--vocab", vocab_dir, "--input", formatted,
                            "--output", theirs / f"{split}.jsonl", "--add_bos", "--add_eos"],
                           check=True, env=env, cwd=tools)
        for name in PREPARED_FILES:
            mine, upstream = (ours / name).read_bytes(), (theirs / name).read_bytes()
            assert upstream.count(b"\n") > 5, (task, name)  # the slice is not trivially empty
            assert hashlib.sha256(mine).hexdigest() == hashlib.sha256(upstream).hexdigest(), (task, name)
