"""scripts/run_pipeline.sh end to end on a tiny slice of the real E2E data, on the CPU.

A 2-layer, 32-wide random GPT-2 stands in for the pretrained one; the slice (200 train, 30 valid and 12 test
lines of the E2E source files) is prepared by the pipeline itself. Java is not needed: without it the E2E
scorer reports METEOR as n/a and the pipeline still completes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

PIPELINE = ROOT / "scripts" / "run_pipeline.sh"
E2E_METRICS = {"BLEU", "NIST", "METEOR", "ROUGE-L", "CIDEr"}  # the paper's Table 3 columns
SCORE_KEYS = {"BLEU": "BLEU", "NIST": "NIST", "METEOR": "METEOR", "ROUGE-L": "ROUGE_L", "CIDEr": "CIDEr"}
TAGS = ("b10p08r4", "b10p09r4")  # length penalty 0.8 and 0.9


def pipeline(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1"}
    env.pop("GPT2_CKPT", None)
    return subprocess.run(["bash", str(PIPELINE), *map(str, args)], env=env, text=True, timeout=600,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def sections(output: str) -> dict[str, str]:
    """Stage header ('1/6 prepare (e2e)', ...) -> what that stage printed."""
    parts = re.split(r"^=== (.+) ===$", output, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def ran_a_command(text: str) -> bool:
    return any(line.startswith("+ ") for line in text.splitlines())


@pytest.fixture()
def tiny_setup(tmp_path, shared_data, vocab_dir):
    data = tmp_path / "data"
    (data / "e2e").mkdir(parents=True)
    (data / "gpt2").symlink_to(vocab_dir, target_is_directory=True)
    for split, n in (("train", 200), ("valid", 30), ("test", 12)):
        lines = (shared_data / "e2e" / f"{split}.txt").read_text(encoding="utf-8").splitlines(keepends=True)
        (data / "e2e" / f"{split}.txt").write_text("".join(lines[:n]), encoding="utf-8")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 512,
                                  "vocab_size": 50257}))
    from gpt2_lora.model import GPT2Config, GPT2LMModel

    torch.manual_seed(0)
    torch.save(GPT2LMModel(GPT2Config.resolve(str(config))).state_dict(), tmp_path / "base.pt")
    args = ["e2e", "--model_card", config, "--init_checkpoint", tmp_path / "base.pt", "--data", data,
            "--work_dir", tmp_path / "run", "--device", "cpu", "--", "--max_step", "5"]
    return tmp_path / "run", data / "e2e", args


@pytest.mark.shared_data
def test_pipeline_e2e_end_to_end_then_skips_then_resumes(tiny_setup):
    work, data, args = tiny_setup
    first = pipeline(*args)
    assert first.returncode == 0, first.stdout[-3000:]
    stages = sections(first.stdout)
    assert len(stages) == 2 + 4 * len(TAGS), list(stages)
    for name, text in stages.items():
        if not name.startswith("1/6"):
            assert ran_a_command(text), f"stage {name} did nothing on a fresh run"

    # outputs of every stage
    n_test = len((data / "test.jsonl").read_text().splitlines())
    assert n_test == 12  # the pipeline prepared the slice from the source text
    assert (work / "loss.png").is_file()
    for tag in TAGS:
        assert len((work / f"predict.{tag}.jsonl").read_text().splitlines()) == n_test
        scores = json.loads((work / f"eval.{tag}" / "scores.json").read_text())
        report = json.loads((work / f"report.{tag}.json").read_text())
        assert {row["metric"] for row in report["rows"]} == E2E_METRICS
        for row in report["rows"]:
            assert row["ours_as_scored"] == scores[SCORE_KEYS[row["metric"]]]
            if row["metric"] == "METEOR" and shutil.which("java") is None:
                assert row["ours"] is None
            else:
                assert row["ours"] is not None and row["ours"] >= 0
    headline = json.loads((work / "report.json").read_text())
    assert headline == json.loads((work / "report.b10p08r4.json").read_text())
    assert "length penalty 0.8" in headline["meta"]["decoding"]
    assert (work / "report.md").read_text().startswith("# E2E NLG Challenge")

    # the same command again: every stage is up to date, nothing runs
    second = pipeline(*args)
    assert second.returncode == 0, second.stdout[-3000:]
    assert sections(second.stdout).keys() == stages.keys()
    for name, text in sections(second.stdout).items():
        assert "up to date" in text and not ran_a_command(text), f"stage {name} ran again:\n{text}"

    # a deleted output: that stage and the later ones of its decoding setting run, nothing else
    (work / "eval.b10p09r4" / "pred.txt").unlink()
    third = pipeline(*args)
    assert third.returncode == 0, third.stdout[-3000:]
    rerun = {name for name, text in sections(third.stdout).items() if ran_a_command(text)}
    assert rerun == {"4/6 decode to text (b10p09r4)", "5/6 score (b10p09r4)", "6/6 report (b10p09r4)"}

    # other settings into the same work dir: refused, the finished run untouched; --overwrite replaces it
    checkpoints = sorted(p.name for p in work.glob("model.*.pt"))
    report = (work / "report.md").read_bytes()
    changed = pipeline(*args[:-1], "6")  # --max_step 6
    assert changed.returncode == 2 and "holds a run of other settings" in changed.stdout.splitlines()[-1]
    assert sorted(p.name for p in work.glob("model.*.pt")) == checkpoints and (work / "report.md").read_bytes() == report
    replaced = pipeline(*args[:args.index("--")], "--overwrite", "--", "--max_step", "6")
    assert replaced.returncode == 0, replaced.stdout[-3000:]
    assert (work / "model.6.pt").is_file() and not (work / "model.5.pt").exists()


@pytest.mark.parametrize("args, message", [
    (["translate"], "TASK must be e2e, webnlg or dart"),
    (["e2e", "--init_checkpoint", "/nonexistent/model.bin"], "no pretrained GPT-2 weights at '/nonexistent"),
    (["dart", "--frobnicate", "1"], "unknown option '--frobnicate'"),
    (["webnlg", "--lora_dim"], "--lora_dim needs a value"),
])
def test_bad_usage_is_one_line_and_exit_2(args, message):
    result = pipeline(*args)
    assert result.returncode == 2
    assert result.stdout.startswith("error: ") and result.stdout.count("\n") == 1, result.stdout
    assert message in result.stdout
