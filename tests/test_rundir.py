"""training.rundir: what a run's folder holds and how it is found again: step/best/epoch checkpoints, the
pruning of --save_total_limit (never the checkpoint resume.pt holds), resume.pt, clearing an earlier run,
and the loss plot's markers."""

from __future__ import annotations

import pytest
import torch

from gpt2_lora.errors import UserError
from gpt2_lora.training.rundir import FEW_POINTS, RunDir, loss_figure, plot_loss, series_style


def touch(run_dir: RunDir, *names: str) -> None:
    run_dir.path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (run_dir.path / name).write_bytes(b"x")


def names(run_dir: RunDir) -> set[str]:
    return {p.name for p in run_dir.path.iterdir()}


def test_checkpoints_are_found_by_step_best_and_format(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.checkpoints() == {} and run.latest_checkpoint() is None and run.best_checkpoint() is None
    assert run.holds_a_run() is None and run.run_files() == []
    touch(run, "model.2.pt", "model.10.pt", "model.10.safetensors", "model.best.safetensors", "model.final.pt",
          "args.json", "notes.txt")
    assert run.checkpoints() == {2: run.path / "model.2.pt", 10: run.path / "model.10.pt"}  # step order, torch first
    assert RunDir(run.path, "safetensors").checkpoints()[10] == run.path / "model.10.safetensors"
    assert run.latest_checkpoint() == run.path / "model.10.pt"
    assert run.best_checkpoint() == run.path / "model.best.safetensors"
    assert run.weights_path(7) == run.path / "model.7.pt"
    assert RunDir(run.path, "safetensors").weights_path("best").name == "model.best.safetensors"
    assert run.holds_a_run().name.startswith("model.")
    assert {p.name for p in run.run_files()} == {"args.json", "model.2.pt", "model.10.pt", "model.10.safetensors",
                                                "model.best.safetensors"}  # model.final.pt is not a name we write
    run.clear()
    assert names(run) == {"model.final.pt", "notes.txt"}


def test_only_args_and_log_do_not_make_a_run(tmp_path):
    run = RunDir(tmp_path)
    touch(run, "args.json", "log.jsonl")
    assert run.holds_a_run() is None
    touch(run, "resume.pt")
    assert run.holds_a_run() == run.resume_file
    assert run.contains(tmp_path / "resume.pt") and not run.contains(tmp_path / "mine.txt")


@pytest.mark.parametrize("limit,resume_step,expected", [
    (None, None, {1, 2, 3, 4, 5, 6}),
    (2, None, {5, 6}),
    (2, 3, {3, 5, 6}),  # resume.pt holds step 3 (newer files are stale ones of an interrupted run)
    (1, 6, {6}),
])
def test_prune_keeps_the_newest_and_the_one_resume_needs(tmp_path, limit, resume_step, expected):
    run = RunDir(tmp_path, save_total_limit=limit)
    touch(run, *(f"model.{s}.pt" for s in range(1, 7)), "model.best.pt", "model.4.safetensors")
    run.resume_step = resume_step
    deleted = run.prune()
    assert set(run.checkpoints()) == expected and (tmp_path / "model.best.pt").is_file()
    assert {p.name for p in deleted} == {f"model.{s}.pt" for s in range(1, 7) if s not in expected} | (
        set() if 4 in expected else {"model.4.safetensors"})  # every file of a pruned step


def test_epoch_checkpoints_are_kept_and_found_from_the_log(tmp_path):
    run = RunDir(tmp_path, save_total_limit=1, keep_epoch_checkpoints=True)
    run.start({"lr": 0.1})
    for step in range(1, 7):
        touch(run, f"model.{step}.pt")
        if step % 2 == 0:
            run.mark_epoch_end(step // 2, step)
        run.write_log()
        run.prune()
    assert set(run.checkpoints()) == {2, 4, 6}
    later = RunDir(tmp_path)  # e.g. a pipeline after the run: the log tells which checkpoint ends each epoch
    assert later.epoch_checkpoints() == {1: tmp_path / "model.2.pt", 2: tmp_path / "model.4.pt",
                                         3: tmp_path / "model.6.pt"}
    (tmp_path / "model.4.pt").unlink()  # scored and pruned by the pipeline: no longer listed
    assert list(later.epoch_checkpoints()) == [1, 3]
    without = RunDir(tmp_path / "b", save_total_limit=1)
    without.start({})
    for step in (2, 4):
        touch(without, f"model.{step}.pt")
        without.mark_epoch_end(step // 2, step)
        without.prune()
    assert set(without.checkpoints()) == {4} and list(without.epoch_checkpoints()) == [2]


def test_resume_file_round_trip_and_foreign_files(tmp_path):
    run = RunDir(tmp_path)
    assert run.load_resume() is None
    state = {"weights": {"w": torch.ones(2)}, "optimizer": {}, "progress": {"step": 7}, "rng": {}, "args": {"lr": 1}}
    with pytest.raises(ValueError, match="lacks rng"):
        run.save_resume(7, {k: v for k, v in state.items() if k != "rng"})
    run.save_resume(7, state)
    again = RunDir(tmp_path)
    loaded = again.load_resume()
    assert again.resume_step == 7 and torch.equal(loaded["weights"]["w"], torch.ones(2))
    torch.save({"model_state_dict": {}}, run.resume_file)
    with pytest.raises(UserError, match="not a resume file of gpt2_lora.train"):
        run.load_resume()
    with pytest.raises(ValueError, match="save_total_limit must be at least 1"):
        RunDir(tmp_path, save_total_limit=0)


def test_few_points_are_drawn_with_markers(tmp_path):
    """One training record (e.g. step 50 of an 80-step demo) draws no visible line alone: markers."""
    assert series_style(1)["marker"] == "o" and series_style(FEW_POINTS - 1)["marker"] == "o"
    assert series_style(FEW_POINTS)["marker"] is None
    few = [{"event": "train", "step": 50, "loss": 2.0}, *({"event": "eval", "step": s, "valid_loss": 2.5}
                                                          for s in (40, 80))]
    lines = loss_figure(few).axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["train loss (label-smoothed)", "valid loss"]
    assert [line.get_marker() for line in lines] == ["o", "o"] and list(lines[0].get_xdata()) == [50]
    many = [{"event": "train", "step": s, "loss": 1.0 / s} for s in range(1, 101)]
    assert loss_figure(many).axes[0].get_lines()[0].get_marker() in (None, "None", "")
    assert loss_figure([]) is None and not plot_loss([], tmp_path / "none.png")
    assert plot_loss(few, tmp_path / "loss.png") and (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
