"""``python -m gpt2_lora.pipeline custom``: your own rows (a tiny CSV) prepared, trained with E2E's recipe, beam
searched with the paper's decoding, scored with the E2E metrics plus sacreBLEU and chrF, and reported without a
paper column; on the CPU with a tiny random GPT-2."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from gpt2_lora import pipeline as pl
from gpt2_lora import recipes
from helpers import build_tiny, model_options, ran, run_pipeline, write_rows_csv

TAG = recipes.CUSTOM.headline.tag
METRICS = ["BLEU", "NIST", "METEOR", "ROUGE-L", "CIDEr", "sacreBLEU", "chrF"]
SCORE_KEYS = {"BLEU": "BLEU", "NIST": "NIST", "METEOR": "METEOR", "ROUGE-L": "ROUGE_L", "CIDEr": "CIDEr",
              "sacreBLEU": "sacreBLEU", "chrF": "chrF"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, vocab_dir):
    return build_tiny(tmp_path_factory.mktemp("tiny"), vocab_dir)


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_custom_rows_end_to_end_then_up_to_date(tiny, tmp_path, capsys, vocab_dir):
    rows = write_rows_csv(tmp_path / "rows.csv")
    data, work = tmp_path / "mine", tmp_path / "run"
    argv = ["custom", "--data", str(data), "--src", str(tmp_path / "rows.csv"), "--context_field", "attributes",
            "--completion_field", "description", "--split", "0.8,0.1,0.1", "--vocab", str(vocab_dir),
            *model_options(tiny, work), "--", "--max_step", "2"]
    first = run_pipeline(argv, capsys)
    assert ran(first) >= {"2/6 train", f"4/6 decode to text ({TAG})", f"5/6 score ({TAG})", f"6/6 report ({TAG})"}
    # prepared from the rows: no context in two splits, every row in one of them
    contexts = {split: [json.loads(line)["context"] for line in lines(data / f"{split}_formatted.jsonl")]
                for split in ("train", "valid", "test")}
    assert sum(map(len, contexts.values())) == len(rows)
    assert not set(contexts["train"]) & set(contexts["test"]) and not set(contexts["valid"]) & set(contexts["test"])
    # one hypothesis per test context, all of its references grouped (as E2E)
    test = list(dict.fromkeys(contexts["test"]))
    assert len(lines(work / f"eval.{TAG}" / "pred.txt")) == len(test)
    groups = (work / f"eval.{TAG}" / "ref.txt").read_text(encoding="utf-8").strip("\n").split("\n\n")
    assert [len(g.splitlines()) for g in groups] == [contexts["test"].count(c) for c in test]
    # E2E's recipe and the paper's decoding
    args = json.loads((work / "args.json").read_text())
    assert (args["lr"], args["lora_dim"], args["lora_alpha"], args["label_smooth"]) == (0.0002, 4, 32, 0.1)
    assert args["train_data"] == str(data / "train.jsonl")
    assert recipes.CUSTOM.decodes == (recipes.PAPER_DECODE,)  # the test shortens it to 16 tokens
    beam = json.loads((work / ".stamps" / f"beam.{TAG}.json").read_text())
    assert beam[:16] == dataclasses.replace(recipes.PAPER_DECODE, eval_len=16).beam_flags()
    # the E2E metrics and sacreBLEU / chrF with their signatures; no paper column, and the report says why
    scores = json.loads((work / f"eval.{TAG}" / "scores.json").read_text())
    report = json.loads((work / "report.json").read_text())
    assert report["task"] == "custom" and report["paper"] is None
    assert [row["metric"] for row in report["rows"]] == METRICS
    for row in report["rows"]:
        assert row["paper"] is None and row["difference"] is None
        assert row["ours_as_scored"] == scores[SCORE_KEYS[row["metric"]]]
    signatures = {row["metric"]: row["signature"] for row in report["rows"] if "signature" in row}
    assert signatures == scores["signatures"] and signatures["sacreBLEU"].startswith("nrefs:")
    assert report["notes"][0].startswith("No paper column: the LoRA paper reports no numbers for your data")
    markdown = (work / "report.md").read_text()
    assert "| metric | ours |\n|---|---:|\n" in markdown and "paper GPT-2" not in markdown
    assert signatures["chrF"] in markdown
    # again: everything is up to date (prepare says so itself)
    again = run_pipeline(argv, capsys)
    assert ran(again) == set() and "custom: " in again["1/6 prepare (custom)"]


def test_the_shell_wrapper_takes_custom(tiny, tmp_path, vocab_dir):
    """scripts/run_pipeline.sh custom: a prepared folder is checked, without --src nothing is prepared."""
    from gpt2_lora import prepare

    write_rows_csv(tmp_path / "rows.csv")
    prepare.main(["--task", "custom", "--src", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "mine"),
                  "--context_field", "attributes", "--completion_field", "description", "--vocab", str(vocab_dir)])
    env = {**os.environ, "PYTHON": sys.executable}
    command = ["bash", str(ROOT / "scripts" / "run_pipeline.sh"), "custom", "--data", str(tmp_path / "mine"),
               *model_options(tiny, tmp_path / "run"), "--stages", "prepare"]
    result = subprocess.run(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:]
    assert f"up to date: {tmp_path / 'mine'} holds encoded data only" in result.stdout


@pytest.mark.parametrize("argv, message", [
    (["custom"], "custom needs --data DIR: the folder `python -m gpt2_lora.prepare --task custom --out DIR` wrote"),
    (["e2e", "--src", "rows.csv"], "--src is for the custom task (your own data), not e2e"),
    (["custom", "--data", "d", "--split", "0.5,0.5,0.5"], "--split is a setting of --src (the rows to prepare)"),
    (["custom", "--data", "d", "--src", "/nonexistent.csv"], "--src /nonexistent.csv: no such file or folder"),
    (["custom", "--data", "d", "--src", "ROWS", "--split", "0.5,0.6"], "--split 0.5,0.6: expected three fractions"),
    (["custom", "--data", "d", "--src", "ROWS", "--split_seed", "x"], "--split_seed must be a whole number >= 0"),
])
def test_custom_option_errors_are_one_line(tiny, tmp_path, argv, message, capsys):
    write_rows_csv(tmp_path / "rows.csv")
    argv = [str(tmp_path / "rows.csv") if a == "ROWS" else a for a in argv]
    argv = [*argv[:1], "--model_card", str(tiny / "tiny.json"), "--init_checkpoint", str(tiny / "base.pt"), *argv[1:]]
    with pytest.raises(SystemExit) as exit_info:
        pl.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err


def test_a_custom_folder_without_prepared_data_is_one_line(tiny, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        pl.main(["custom", "--data", str(tmp_path / "empty"), *model_options(tiny, tmp_path / "run")])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no custom data in {tmp_path / 'empty'} (no source files, no train.jsonl): run " \
        f"python -m gpt2_lora.prepare --task custom --src ROWS --out {tmp_path / 'empty'}, or pass --src ROWS" in err
