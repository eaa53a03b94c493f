"""The paper's protocol through the pipeline, on the CPU with a tiny random GPT-2: seeds averaged into one report,
every epoch scored with the checkpoint rules, scored checkpoints pruned (never the one a resume needs), and the
three tables in one command. Option errors are one line."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from gpt2_lora import pipeline as pl
from gpt2_lora import runs, stages
from gpt2_lora.report_inputs import RULES
from helpers import build_tiny, echoed_commands, model_options, ran, run_pipeline, sections, short_decoding

TAG = "b10p08r4"
SCORE_KEYS = {"BLEU": "BLEU", "NIST": "NIST", "METEOR": "METEOR", "ROUGE-L": "ROUGE_L", "CIDEr": "CIDEr"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, vocab_dir):
    return build_tiny(tmp_path_factory.mktemp("tiny"), vocab_dir)


def expected_pick(records: list[dict], scores: list[dict], rule: str) -> int:
    """The epoch a rule picks, worked out here from the records and their scores files (ties: the earlier)."""
    if rule == "final":
        return max(r["epoch"] for r in records)
    key = {"best_valid": lambda i: records[i]["valid_loss"], "best_test": lambda i: -scores[i]["BLEU"]}[rule]
    return records[min(range(len(records)), key=lambda i: (key(i), records[i]["epoch"]))]["epoch"]


def assert_mean_and_std(aggregated: dict, per_seed: list[dict]) -> None:
    """Every row of the report over the seeds: the seeds' values in order, their mean and sample std (n - 1)."""
    for k, row in enumerate(aggregated["rows"]):
        values = [report["rows"][k]["ours"] for report in per_seed]
        assert row["metric"] == per_seed[0]["rows"][k]["metric"] and row["ours_runs"] == values
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        assert row["ours"] == pytest.approx(mean, abs=1e-12) and row["ours_std"] == pytest.approx(std, abs=1e-12)


def seed_results(work, seed):
    folder = work / f"seed{seed}"
    records = json.loads((folder / f"epochs.{TAG}.json").read_text())
    scores = [json.loads((folder / r["scores"]).read_text()) for r in records]
    return records, scores, json.loads((folder / "report.json").read_text())


def test_seeds_and_epochs_end_in_the_report_over_the_seeds(tiny, tmp_path, capsys):
    work = tmp_path / "run"

    def command(*select):  # full fine-tuning at a high rate, so that the scores are not all 0
        return ["e2e", *model_options(tiny, work), "--data", str(tiny / "data"), "--lora_dim", "0", "--seeds", "1,2",
                "--eval_epochs", *select, "--save_total_limit", "1", "--", "--max_epoch", "2", "--lr", "0.03",
                "--warmup_step", "2"]
    argv = command()
    first = run_pipeline(argv, capsys)
    per_epoch = -(-len((tiny / "data" / "e2e" / "train.jsonl").read_text().splitlines()) // 8)
    for seed in (1, 2):
        records, scores, report = seed_results(work, seed)
        assert [(r["epoch"], r["step"]) for r in records] == [(1, per_epoch), (2, 2 * per_epoch)]
        assert [row["epoch"] for row in report["epochs"]] == [1, 2]  # the per-epoch table holds both
        assert report["selection"]["rule"] == "final" and report["selection"]["epoch"] == 2
        assert report["selection"]["picks"] == {rule: expected_pick(records, scores, rule) for rule in RULES}
        assert all(row["ours_as_scored"] == scores[1][SCORE_KEYS[row["metric"]]] for row in report["rows"])
        assert report["meta"]["decoding"] == short_decoding(pl.parse_args(argv)).recipe.headline.describe()
        # epoch 1 was scored, then its checkpoint removed under --save_total_limit 1; resume.pt's stays
        folder = work / f"seed{seed}"
        resume_step = torch.load(folder / "resume.pt", weights_only=True)["progress"]["step"]
        assert resume_step == 2 * per_epoch and (folder / f"model.{resume_step}.pt").is_file()
        assert not (folder / f"model.{per_epoch}.pt").exists()
        assert (folder / "epochs" / "epoch1" / f"eval.{TAG}" / "scores.json").is_file()
    aggregated = json.loads((work / "report.json").read_text())
    assert aggregated["seeds"] == [1, 2] and aggregated["selection"] == {"rule": "final", "epochs": [2, 2]}
    assert_mean_and_std(aggregated, [seed_results(work, s)[2] for s in (1, 2)])
    assert (work / "report.json").read_bytes() == (work / f"report.{TAG}.json").read_bytes()
    assert "(2 runs)" in (work / "report.md").read_text() and "wrote" in first[f"report over seeds 1, 2 ({TAG})"]

    # the same command again: every stage is up to date, the report over the seeds too
    again = run_pipeline(argv, capsys)
    assert ran(again) == set() and "up to date" in again[f"report over seeds 1, 2 ({TAG})"]
    # another rule: only the reports are made again (epoch 1's checkpoint is gone, its scores are kept)
    for rule in ("best_valid", "best_test"):
        parts = run_pipeline(command("--select", rule), capsys)
        assert ran(parts) == {f"6/6 report ({TAG}, every epoch; headline: {rule})"}, list(parts)
        picks = []
        for seed in (1, 2):
            records, scores, report = seed_results(work, seed)
            picks.append(expected_pick(records, scores, rule))
            assert report["selection"]["rule"] == rule and report["selection"]["epoch"] == picks[-1]
            chosen = scores[picks[-1] - 1]
            assert all(row["ours_as_scored"] == chosen[SCORE_KEYS[row["metric"]]] for row in report["rows"])
        aggregated = json.loads((work / "report.json").read_text())
        assert aggregated["selection"] == {"rule": rule, "epochs": picks}
        assert_mean_and_std(aggregated, [seed_results(work, s)[2] for s in (1, 2)])


@pytest.mark.parametrize("lora_dim, limit, kept", [
    (0, None, {10, 15}),   # full fine-tuning: training's default, the newest 2 (and resume.pt's)
    (0, 1, {10, 15}),      # the newest, and the one resume.pt continues from
    (4, None, {5, 10, 15}),  # LoRA: training keeps every checkpoint
    (4, 0, {5, 10, 15}),   # 0: keep all
])
def test_pruning_scored_checkpoints_keeps_the_one_resume_needs(tiny, tmp_path, lora_dim, limit, kept):
    from gpt2_lora.training.rundir import RunDir

    config = pl.parse_args(["e2e", *model_options(tiny, tmp_path), "--data", str(tiny / "data"), "--lora_dim",
                            str(lora_dim), *([] if limit is None else ["--save_total_limit", str(limit)])])
    run_dir = RunDir(tmp_path)
    for step in (5, 10, 15):
        run_dir.save_checkpoint({"w": torch.zeros(1)}, step)
    run_dir.save_checkpoint({"w": torch.zeros(1)}, "best")
    run_dir.save_resume(10, {"weights": {}, "optimizer": {}, "progress": {"step": 10}, "rng": {}, "args": {}})
    runs.prune_scored(pl.Run(config, None, tmp_path))
    assert set(RunDir(tmp_path).checkpoints()) == kept and (tmp_path / "model.best.pt").is_file()


def test_paper_command_runs_every_task_and_seed_then_the_three_tables(tiny, tmp_path, capsys):
    from gpt2_lora.paper_runs import print_paper_summary, run_paper

    work = tmp_path / "paper"
    argv = ["paper", "--tasks", "dart,e2e", *model_options(tiny, work), "--data", str(tiny / "data"), "--seeds",
            "1,2", "--", "--max_step", "2"]
    paper = pl.parse_args(argv)
    paper = dataclasses.replace(paper, configs=tuple(short_decoding(c) for c in paper.configs))
    assert [(c.task, c.work_dir) for c in paper.configs] == [("e2e", work / "e2e_tiny"), ("dart", work / "dart_tiny")]
    with echoed_commands():
        print_paper_summary(paper, run_paper(paper))
    out = capsys.readouterr().out
    for config in paper.configs:
        for seed in (1, 2):
            assert json.loads((config.work_dir / f"seed{seed}" / "args.json").read_text())["random_seed"] == seed
    data = json.loads((work / "paper_report.json").read_text())
    assert [t["task"] for t in data["tables"]] == ["e2e", "dart"]  # the paper's order (Tables 3, 13)
    for table in data["tables"]:
        aggregated = json.loads((work / f"{table['task']}_tiny" / "report.json").read_text())
        by_metric = {(r["metric"], r["split"]): r for r in aggregated["rows"]}
        (medium,) = [b for b in table["blocks"] if b["size"] == "M"]  # a config.json card: the paper's M row
        ours = medium["rows"][-1]
        assert ours["kind"] == "ours" and ours["seeds"] == [1, 2] and ours["n_runs"] == 2
        for column in table["columns"]:
            row, cell = by_metric[(column["metric"], column["split"])], ours["cells"][column["id"]]
            assert (cell["value"], cell["std"], cell["runs"]) == (row["ours"], row["ours_std"], row["ours_runs"])
        assert all(r["kind"] != "ours" for b in table["blocks"] if b["size"] == "L" for r in b["rows"])
    assert (work / "paper_report.md").read_text() in out
    # again: every run and the paper report are up to date
    with echoed_commands():
        run_paper(paper)
    again = sections(capsys.readouterr().out)
    assert ran(again) == set() and "up to date" in again["paper report (Tables 3, 13, 14)"]


@pytest.mark.parametrize("argv, message", [
    (["e2e", "--select", "other", "--eval_epochs"], "--select must be final or best_valid or best_test, got 'other'"),
    (["e2e", "--select", "best_test"], "--select best_test picks one of the epochs' checkpoints: add --eval_epochs"),
    (["e2e", "--seeds", "a,b"], "--seeds must be comma-separated whole numbers (e.g. 110,111,112), got 'a,b'"),
    (["e2e", "--seeds", "110,111,110"], "--seeds 110,111,110: seed 110 is given twice"),
    (["e2e", "--save_total_limit", "-1"], "--save_total_limit must be a whole number >= 0 (0 keeps every checkpoint)"),
    (["e2e", "--cards", "md"], "--cards is an option of the paper command"),
    (["paper", "--cards", "xx"], "--cards must be a comma-separated subset of md,lg, got 'xx'"),
    (["paper", "--cards", "md,md"], "--cards must be a comma-separated subset of md,lg, got 'md,md'"),
    (["paper", "--tasks", "e2e,squad"], "--tasks must be a comma-separated subset of e2e,webnlg,dart, got 'e2e,squad'"),
    (["paper", "--cards", "md", "--model_card", "gpt2.lg"], "give --cards (the paper's sizes) or --model_card"),
    (["paper", "--cards", "md,lg", "--init_checkpoint", "base.pt"], "--init_checkpoint (or GPT2_CKPT) names one"),
    (["paper", "--seeds", "1,1"], "--seeds 1,1: seed 1 is given twice"),
    (["paper", "--work_dir", "runs/{task}"], "the paper command's work dir holds every run (in <task>_<card>/)"),
])
def test_option_errors_are_one_line(tiny, argv, message, capsys, monkeypatch):
    monkeypatch.delenv("GPT2_CKPT", raising=False)
    if "--cards" not in argv and "--model_card" not in argv:  # a model that exists: the option under test fails
        argv = [*argv[:1], "--model_card", str(tiny / "tiny.json"), "--init_checkpoint", str(tiny / "base.pt"),
                *argv[1:]]
    with pytest.raises(SystemExit) as exit_info:
        pl.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err


def test_seed_process_command_round_trips_the_new_options(tiny, tmp_path):
    config = pl.parse_args(["e2e", *model_options(tiny, tmp_path), "--seeds", "3,4", "--eval_epochs", "--select",
                            "best_valid", "--save_total_limit", "2", "--vocab", str(tiny / "data" / "gpt2")])
    child = pl.parse_args(runs.seed_command(pl.Run(config, 4, tmp_path / "seed4"))[3:])
    assert child == dataclasses.replace(config, seeds=(4,), seed_worker=True,
                                        stages=("train", "beam", "decode", "score", "report"))
    assert pl.retention_flags(config) == ["--save_total_limit", "2", "--keep_epoch_checkpoints"]
    assert "--keep_epoch_checkpoints" in pl.training(pl.Run(config, 4, tmp_path / "seed4")).argv
    assert "--save_total_limit" not in json.dumps(pl.training(pl.Run(config, 4, tmp_path)).signature)


def test_every_decoding_gets_its_report_over_the_seeds(tiny, tmp_path, capsys):
    """E2E decodes twice (length penalty 0.8 and 0.9): report.<tag>.* over the seeds for each, report.* the first."""
    from gpt2_lora import report as rep
    from gpt2_lora.recipes import E2E

    config = pl.parse_args(["e2e", *model_options(tiny, tmp_path), "--seeds", "7,8"])
    numbers = rep.task_numbers(rep.load_paper_numbers(), "e2e")
    for seed, bleu in ((7, 0.61), (8, 0.65)):
        for decode in E2E.decodes:
            scores = {"BLEU": bleu + decode.length_penalty / 100, "NIST": 7.0, "METEOR": 0.4, "ROUGE_L": 0.6,
                      "CIDEr": 2.0, "approximate": []}
            report = rep.build_report("e2e", {None: rep.parse_scores(scores, numbers, "s")}, config.model_card,
                                      meta={"decoding": decode.describe(), "seed": seed})
            rep.write_report(report, tmp_path / f"seed{seed}" / f"eval.{decode.tag}")
            stages.copy_report(tmp_path / f"seed{seed}" / f"eval.{decode.tag}", tmp_path / f"seed{seed}",
                                    decode.tag)
    headlines = [tmp_path / f"seed{seed}" / "report.md" for seed in (7, 8)]
    assert runs.aggregate_seed_reports(config, headlines) == tmp_path / "report.md"
    for decode in E2E.decodes:
        aggregated = json.loads((tmp_path / f"report.{decode.tag}.json").read_text())
        assert aggregated["meta"]["decoding"] == decode.describe() and aggregated["seeds"] == [7, 8]
        bleu = next(r for r in aggregated["rows"] if r["metric"] == "BLEU")
        runs_ = [100 * (b + decode.length_penalty / 100) for b in (0.61, 0.65)]
        assert bleu["ours_runs"] == pytest.approx(runs_) and bleu["ours"] == pytest.approx(sum(runs_) / 2)
    assert (tmp_path / "report.json").read_bytes() == (tmp_path / f"report.{E2E.headline.tag}.json").read_bytes()
    capsys.readouterr()
    runs.aggregate_seed_reports(config, headlines)  # nothing changed: both up to date
    assert capsys.readouterr().out.count("up to date: ") == 2
