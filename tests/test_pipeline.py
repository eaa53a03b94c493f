"""scripts/run_pipeline.sh end to end on a tiny slice of the real E2E data, on the CPU.

A 2-layer, 32-wide random GPT-2 stands in for the pretrained one; the slice (200 train, 30 valid and 12 test
lines of the E2E source files) is prepared by the pipeline itself. Java is not needed: without it the E2E
scorer reports METEOR as n/a and the pipeline still completes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from gpt2_lora.errors import UserError

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


# ------------------------------------------------------------------------------ gpt2_lora.pipeline in-process
# A synthetic E2E-style set (encoded layers only) and a 2-layer, 32-wide random GPT-2 as the base; mostly one
# decoding setting where the recipe has two, and 16 tokens instead of 64, so that each run beams once and briefly.
from gpt2_lora import pipeline as pl  # noqa: E402
from gpt2_lora import recipes, stages  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, vocab_dir):
    from gpt2_lora import prepare
    from gpt2_lora.model import GPT2Config, GPT2LMModel

    root = tmp_path_factory.mktemp("tiny")
    data = root / "data" / "e2e"
    prepare.prepare_synthetic(data, {"train": 48, "valid": 8, "test": 2}, vocab=vocab_dir)
    (root / "data" / "gpt2").symlink_to(vocab_dir, target_is_directory=True)
    for source in data.glob("*.txt"):
        source.unlink()  # encoded data only: the prepare stage just checks it
    config = root / "tiny.json"
    config.write_text(json.dumps({"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 512, "vocab_size": 50257}))
    torch.manual_seed(0)
    torch.save(GPT2LMModel(GPT2Config.resolve(str(config))).state_dict(), root / "base.pt")
    return root


def tiny_argv(tiny, work, *options, extra=("--max_step", "4")):
    return ["e2e", "--model_card", str(tiny / "tiny.json"), "--init_checkpoint", str(tiny / "base.pt"), "--data",
            str(tiny / "data"), "--work_dir", str(work), "--device", "cpu", *options, "--", *extra]


def one_decoding(config):
    short = dataclasses.replace(config.recipe.headline, eval_len=16)
    return dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, decodes=(short,)))


def run_inprocess(argv, capsys) -> dict[str, str]:
    """Stage title -> what it printed (stderr goes to stdout, so that the echoed commands stay in order)."""
    config = one_decoding(pl.parse_args(argv))
    with contextlib.redirect_stderr(sys.stdout):
        pl.print_summary(config, pl.run(config))
    return sections(capsys.readouterr().out)


def ran(parts: dict[str, str]) -> set[str]:
    return {name for name, text in parts.items() if ran_a_command(text)}


def test_stages_skip_rerun_on_changes_and_resume(tiny, tmp_path, capsys):
    work = tmp_path / "run"
    first = run_inprocess(tiny_argv(tiny, work, "--stages", "prepare,train,beam,decode", extra=(
        "--max_step", "4", "--stop_at_step", "2")), capsys)
    assert "training paused at --stop_at_step 2" in first["2/6 train"] and "3/6" not in " ".join(first)
    assert (work / "resume.pt").is_file() and not (work / "model.4.pt").exists()
    # the same command without --stop_at_step continues that run
    second = run_inprocess(tiny_argv(tiny, work, "--stages", "prepare,train,beam,decode"), capsys)
    assert "resuming the unfinished run" in second["2/6 train"] and (work / "model.4.pt").is_file()
    assert ran(second) == {"2/6 train", "3/6 beam search (b10p08r4: beam 10, length penalty 0.8, no-repeat 4)",
                           "4/6 decode to text (b10p08r4)"}
    assert len((work / "eval.b10p08r4" / "pred.txt").read_text().splitlines()) == 2
    # nothing changed: nothing runs
    assert ran(run_inprocess(tiny_argv(tiny, work, "--stages", "prepare,train,beam,decode"), capsys)) == set()
    # a decoding flag changed: beam and decode again, training not
    again = run_inprocess(tiny_argv(tiny, work, "--stages", "train,beam,decode", "--beam_precision", "bf16"), capsys)
    assert ran(again) == {"3/6 beam search (b10p08r4: beam 10, length penalty 0.8, no-repeat 4)",
                          "4/6 decode to text (b10p08r4)"}
    assert "up to date" in again["2/6 train"]
    # an input changed: the finished run of these settings is trained again from the start
    os.utime(tiny / "data" / "e2e" / "valid.jsonl")
    changed = run_inprocess(tiny_argv(tiny, work, "--stages", "train", "--beam_precision", "bf16"), capsys)
    assert "training again from the start" in changed["2/6 train"] and ran(changed) == {"2/6 train"}
    # other settings: refused, one line; the run is untouched
    before = sorted(p.name for p in work.iterdir())
    with pytest.raises(UserError, match="holds a run of other settings; give another --work_dir, or --overwrite"):
        run_inprocess(tiny_argv(tiny, work, "--lora_dim", "2"), capsys)
    assert sorted(p.name for p in work.iterdir()) == before
    capsys.readouterr()
    # beam alone decodes the recorded checkpoint of these settings (the new one); of other settings there is none
    beam_only = run_inprocess(tiny_argv(tiny, work, "--stages", "beam", "--beam_precision", "bf16"), capsys)
    assert list(beam_only) == ["3/6 beam search (b10p08r4: beam 10, length penalty 0.8, no-repeat 4)"]
    assert ran(beam_only) == set(beam_only)
    with pytest.raises(UserError, match="no finished training of these settings"):
        run_inprocess(tiny_argv(tiny, work, "--stages", "beam", "--lora_alpha", "16"), capsys)


def test_full_run_outputs_and_report(tiny, tmp_path, capsys):
    work = tmp_path / "run"
    config = pl.parse_args(tiny_argv(tiny, work, "--stages", "prepare,train,beam,decode,score,report"))
    reports = pl.run(config)  # both decodings of the E2E recipe
    pl.print_summary(config, reports)
    out = capsys.readouterr().out
    assert reports == [work / "report.md"] and "report: " in out and "length penalty 0.9: report.b10p09r4.md" in out
    for tag in ("b10p08r4", "b10p09r4"):
        assert {p.name for p in (work / f"eval.{tag}").iterdir()} >= {"ref.txt", "pred.txt", "scores.json",
                                                                       "report.md", "report.json"}
        report = json.loads((work / f"report.{tag}.json").read_text())
        assert report["meta"]["checkpoint"] == str(work / "model.4.pt") and report["meta"]["steps"] == 4
        assert report["meta"]["decoding"] == recipes.E2E.decodes[TAGS.index(tag)].describe()
    assert (work / "report.json").read_bytes() == (work / "report.b10p08r4.json").read_bytes()
    args = json.loads((work / "args.json").read_text())
    assert (args["lr"], args["lora_alpha"], args["random_seed"], args["precision"]) == (0.0002, 32, 110, "fp32")


def test_seeds_side_by_side_then_one_after_another(tiny, tmp_path, capsys, monkeypatch):
    from gpt2_lora import runs

    work = tmp_path / "seeds"
    argv = tiny_argv(tiny, work, "--seeds", "1,2", "--stages", "prepare,train", extra=("--max_step", "2"))
    monkeypatch.setattr(runs, "seed_slots", lambda config: ["0", "1"])  # as with two GPUs: a process each
    assert pl.run(pl.parse_args(argv)) == []
    assert "in parallel, one process per GPU (GPUs 0, 1)" in capsys.readouterr().out
    for seed in (1, 2):
        assert json.loads((work / f"seed{seed}" / "args.json").read_text())["random_seed"] == seed
        assert (work / f"seed{seed}" / "model.2.pt").is_file()
        assert "2/6 train" in (work / f"seed{seed}" / "pipeline.log").read_text()
    monkeypatch.undo()
    # the same seeds one after another in this process are the same runs: training is up to date; each seed's
    # checkpoint is decoded
    argv[argv.index("prepare,train")] = "train,beam,decode"
    config = one_decoding(pl.parse_args(argv))
    pl.run(config)
    printed = capsys.readouterr()
    assert "one after another in this process" in printed.out and "resuming" not in printed.out
    assert printed.out.count("=== 2/6 train ===\nup to date: ") == 2
    assert all((work / f"seed{seed}" / "eval.b10p08r4" / "pred.txt").is_file() for seed in (1, 2))
    assert [w for _, w in config.runs()] == [work / "seed1", work / "seed2"]


def test_seed_process_command_round_trips(tiny, tmp_path):
    from gpt2_lora import runs

    config = pl.parse_args(tiny_argv(tiny, tmp_path, "--seeds", "3,4", "--eval_epochs", "--compile",
                                     "--no_cuda_graphs", "--overwrite"))
    command = runs.seed_command(pl.Run(config, 4, tmp_path / "seed4"))
    assert command[1:3] == ["-m", "gpt2_lora.pipeline"]
    child = pl.parse_args(command[3:])
    assert child == dataclasses.replace(config, seeds=(4,), seed_worker=True,
                                        stages=("train", "beam", "decode", "score", "report"))


def test_eval_epochs_decodes_and_scores_every_epoch(tiny, tmp_path, capsys):
    work = tmp_path / "epochs"
    config = one_decoding(pl.parse_args(tiny_argv(tiny, work, "--eval_epochs", "--stages", "train,beam,decode,score",
                                                  extra=("--max_epoch", "2", "--train_batch_size", "16"))))
    pl.run(config)
    summary = json.loads((work / "epochs.json").read_text())
    per_epoch = -(-len((tiny / "data" / "e2e" / "train.jsonl").read_text().splitlines()) // 16)
    assert [(e["epoch"], e["step"]) for e in summary] == [(1, per_epoch), (2, 2 * per_epoch)]
    assert [e["checkpoint"] for e in summary] == [str(work / f"model.{per_epoch * k}.pt") for k in (1, 2)]
    assert all(e["valid_loss"] > 0 and set(e["scores"]["b10p08r4"]["all"]) >= {"BLEU", "NIST"} for e in summary)
    assert (work / "epochs" / "epoch1" / "eval.b10p08r4" / "scores.json").is_file()
    assert not (work / "epochs" / "epoch2").exists()  # the last epoch's checkpoint is the final one, done above
    assert "5/6 score (epoch 1, b10p08r4)" in capsys.readouterr().out


@pytest.mark.parametrize("records, ends", [
    # the epoch-end validation logged with the next epoch's number, then the final one
    ([("train", 1, 5), ("train", 1, 10), ("eval", 2, 10), ("end", 1, 10), ("train", 2, 15), ("eval", 3, 20),
      ("end", 2, 20)], [(1, 10), (2, 20)]),
    # an --eval_interval validation at the epoch's last step stands for the epoch-end one
    ([("train", 1, 5), ("eval", 1, 10), ("end", 1, 10), ("train", 2, 15), ("eval", 2, 20), ("end", 2, 20)],
     [(1, 10), (2, 20)]),
    # no training records (--log_interval above the epoch length), a mid-epoch validation in epoch 2
    ([("eval", 2, 3), ("end", 1, 3), ("eval", 2, 5), ("eval", 3, 6), ("end", 2, 6)], [(1, 3), (2, 6)]),
    # what reading the epoch numbers got wrong: --eval_interval validations at both epoch ends and no train
    # records, so the first record with epoch 2 is epoch 2's last validation (it gave epoch 1 step 6)
    ([("eval", 1, 3), ("end", 1, 3), ("eval", 2, 6), ("end", 2, 6)], [(1, 3), (2, 6)]),
    # a run stopped within its first epoch (or a log of an older version): no finished epoch
    ([("train", 1, 5), ("eval", 1, 6)], []),
])
def test_epoch_ends_are_the_logs_epoch_end_records(records, ends):
    log = [{"event": "epoch_end", "epoch": epoch, "step": step, "checkpoint": f"model.{step}.pt"} if e == "end" else
           {"event": e, "epoch": epoch, "step": step, "valid_loss": 1.0} for e, epoch, step in records]
    assert stages.epoch_ends(log) == [(epoch, step, f"model.{step}.pt") for epoch, step in ends]


@pytest.mark.parametrize("argv, message", [
    (["translate"], "TASK must be e2e, webnlg or dart (the paper's), custom (your own data) or paper (all of the "
                    "paper's runs), got 'translate' (usage: "),
    ([], "usage: python -m gpt2_lora.pipeline"),
    (["e2e", "--lora_dim", "x"], "--lora_dim must be a whole number >= 0, got 'x'"),
    (["e2e", "--lora_alpha", "-3"], "--lora_alpha must be a positive number, got '-3'"),
    (["e2e", "--beam_precision", "fp16"], "--beam_precision must be fp32 or bf16, got 'fp16'"),
    (["e2e", "--model_card", "gpt2.xl"], "--model_card gpt2.xl: not a card (gpt2.sm|gpt2.md|gpt2.lg) nor a config"),
    (["e2e", "--nproc", "0"], "--nproc must be a number of GPUs, got '0'"),
    (["e2e", "--stages", "train,fly"], "--stages must be a comma-separated subset of prepare,train,beam"),
    (["e2e", "--seeds", "1,x"], "--seeds must be comma-separated whole numbers"),
    (["e2e", "--seeds", "1,2", "--", "--random_seed", "3"], "--random_seed among the train flags contradicts --seeds"),
    (["e2e", "--model_card", ""], "--model_card needs a value"),
    (["e2e", "--device"], "--device needs a value"),
    (["e2e", "--frobnicate"], "unknown option '--frobnicate' (see --help; training flags go after --)"),
])
def test_option_errors_are_one_line(tiny, argv, message, capsys):
    if argv[:1] == ["e2e"]:  # weights that exist, so that the option under test is what fails
        argv = [*argv[:1], "--init_checkpoint", str(tiny / "base.pt"), *argv[1:]]
    with pytest.raises(SystemExit) as exit_info:
        pl.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err


def test_missing_data_and_weights_are_one_line(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GPT2_CKPT", raising=False)
    for argv, message in (
            (tiny_argv(tiny, tmp_path / "w")[:5] + ["--data", str(tmp_path)], f"no e2e data in {tmp_path / 'e2e'}"),
            (["dart", "--model_card", "gpt2.lg"], "no pretrained GPT-2 weights at '"),
            (["webnlg", "--model_card", str(tiny / "tiny.json")], "is a config.json: pass --init_checkpoint")):
        with pytest.raises(SystemExit):
            pl.main(argv)
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pl.main(["e2e", "--help"])
    assert exit_info.value.code == 0 and "--eval_epochs" in capsys.readouterr().out
    assert pl.main(["--help"]) == 0 and "python -m gpt2_lora.pipeline TASK" in capsys.readouterr().out


def test_train_flags_naming_pipeline_options_set_them(tiny, tmp_path):
    config = pl.parse_args(tiny_argv(tiny, tmp_path / "{task}_{card}_{size}", "--lora_dim", "4", extra=(
        "--lora_dim", "8", "--precision", "bf16", "--no_cuda_graphs", "--resume", "--max_step", "3", "--lr", "0.1")))
    assert config.recipe.train.lora_dim == 8 and config.precision == "bf16" and config.cuda_graphs is False
    assert config.train_extra == ("--max_step", "3", "--lr", "0.1")  # --resume: the pipeline decides that
    assert config.work_dir == tmp_path / "e2e_tiny_custom"


def test_speed_flags_follow_the_device(tiny, tmp_path):
    cpu = pl.parse_args(tiny_argv(tiny, tmp_path))
    assert pl.speed_flags(cpu) == ["--precision", "fp32", "--device", "cpu"]
    gpu = dataclasses.replace(cpu, device="cuda")
    assert pl.speed_flags(gpu) == ["--precision", "bf16", "--cuda_graphs", "--device", "cuda"]
    assert pl.speed_flags(dataclasses.replace(gpu, compile="default", residual="bf16")) == [
        "--precision", "bf16", "--residual", "bf16", "--compile", "default", "--device", "cuda"]
    assert "--cuda_graphs" not in pl.speed_flags(dataclasses.replace(gpu, cuda_graphs=False))


@pytest.mark.parametrize("env, options", [
    ({}, []),
    ({"PRECISION": "bf16", "GRAPHS": "0", "NPROC": "2"}, ["--precision", "bf16", "--nproc", "2", "--no_cuda_graphs"]),
    ({"COMPILE": "reduce-overhead", "GRAPHS": "1", "BATCHING": "packed", "MAX_TOKENS": "512"},
     ["--batching", "packed", "--max_tokens", "512", "--compile", "reduce-overhead"]),
    ({"COMPILE": "1", "RESIDUAL": "bf16", "PACKED_ATTENTION": "varlen"},
     ["--residual", "bf16", "--packed_attention", "varlen", "--compile"]),
])
def test_shell_environment_becomes_options(env, options):
    names = ("PRECISION", "GRAPHS", "COMPILE", "BATCHING", "NPROC", "MAX_TOKENS", "RESIDUAL", "PACKED_ATTENTION")
    clean = {k: v for k, v in os.environ.items() if k not in names}
    script = f'set -euo pipefail; source {ROOT / "scripts" / "pipeline_env.sh"}; printf "%s\\n" ${{PIPELINE_ENV[@]+"${{PIPELINE_ENV[@]}}"}}'
    out = subprocess.run(["bash", "-c", script], env={**clean, **env}, text=True, capture_output=True, check=True)
    assert out.stdout.split() == options


def test_wrappers_are_short():
    assert len((ROOT / "scripts" / "run_pipeline.sh").read_text().splitlines()) <= 40


def test_several_processes_train_under_torchrun(monkeypatch):
    calls = []
    monkeypatch.setattr(stages.subprocess, "run", lambda command, env: calls.append((command, env)) or
                        subprocess.CompletedProcess(command, 0))
    stages.run_torchrun(2, ["--train_data", "t.jsonl"])
    command, env = calls[0]
    assert command == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                       "gpt2_lora.train", "--train_data", "t.jsonl"]
    assert str(ROOT) in env["PYTHONPATH"].split(os.pathsep)
    monkeypatch.setattr(stages.subprocess, "run", lambda command, env: subprocess.CompletedProcess(command, 3))
    with pytest.raises(UserError, match="training under torchrun failed \\(exit status 3\\)"):
        stages.run_torchrun(2, [])


def test_seeds_go_side_by_side_only_with_several_gpus_and_one_process_each(tiny, tmp_path, monkeypatch):
    from gpt2_lora import runs

    config = pl.parse_args(tiny_argv(tiny, tmp_path, "--seeds", "1,2,3"))
    monkeypatch.setattr(runs, "visible_gpus", lambda: ["4", "6"])
    assert runs.seed_slots(dataclasses.replace(config, device=None)) == ["4", "6"]
    assert runs.seed_slots(config) == []  # --device cpu
    assert runs.seed_slots(dataclasses.replace(config, device=None, nproc=2)) == []
    assert runs.seed_slots(dataclasses.replace(config, device=None, seeds=(1,))) == []
    monkeypatch.setattr(runs, "visible_gpus", lambda: ["0"])
    assert runs.seed_slots(dataclasses.replace(config, device=None)) == []


def test_train_task_script_runs_the_prepare_and_train_stages(tiny, tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "MODEL": str(tiny / "tiny.json"), "GPT2_CKPT": str(tiny / "base.pt"),
           "DATA": str(tiny / "data"), "WORK_DIR": str(tmp_path / "{task}_{size}"), "GRAPHS": "0"}
    command = ["bash", str(ROOT / "scripts" / "train_e2e.sh"), "--max_step", "2", "--device", "cpu"]
    first = subprocess.run(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:]
    assert list(sections(first.stdout)) == ["1/6 prepare (e2e)", "2/6 train"]
    assert (tmp_path / "e2e_custom" / "model.2.pt").is_file()
    args = json.loads((tmp_path / "e2e_custom" / "args.json").read_text())
    assert (args["lr"], args["max_step"], args["precision"], args["cuda_graphs"]) == (0.0002, 2, "fp32", False)
    again = subprocess.run(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert again.returncode == 0 and "up to date: " in sections(again.stdout)["2/6 train"]
