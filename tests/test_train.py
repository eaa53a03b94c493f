"""Training end to end through the CLI (gpt2_lora.train): over-fitting, bit-exact resume, batching modes,
checkpoint formats and limits, DDP on two CPU processes, and one-line errors about files and work dirs.
A tiny GPT-2 (vocab 128) on the CPU."""

from __future__ import annotations

import json
import os

import pytest
import torch

from gpt2_lora.checkpoint import load_checkpoint_file, read_metadata
from gpt2_lora.data import read_encoded
from gpt2_lora.model import GPT2Config, GPT2LMModel
from gpt2_lora.train import main
from gpt2_lora.training.batching import Layout, collate_packed
from gpt2_lora.training.config import TrainConfig
from gpt2_lora.training.loop import batch_maker
from gpt2_lora.training.rundir import RunDir
from gpt2_lora.training.sampling import BatchPlan, packed_shape
from helpers import TINY, base_args, log_records, run_cli, tiny_model, write_copy_task


def test_tiny_model_overfits(train_files, tmp_path):
    main(base_args(train_files, tmp_path / "run", "--lora_dim", "0", "--lr", "0.02", "--weight_decay", "0",
                   "--max_epoch", "20", "--train_batch_size", "8", "--warmup_step", "4", "--correct_bias",
                   "--adam_beta2", "0.999", "--eval_interval", "1000", "--save_interval", "1000"))
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["event"] == "train"]
    valid = [r["valid_loss"] for r in records if r["event"] == "eval"]
    assert train[0] > 4.0 and train[-1] < 0.45 * train[0]  # from ~ln(128) to well below half
    assert valid[-1] < valid[0]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000


def test_resume_after_interrupt_is_bit_exact(train_files, tmp_path):
    common = ["--lora_dim", "4", "--lora_alpha", "8", "--lora_dropout", "0.2", "--label_smooth", "0.1",
              "--lr", "0.005", "--max_epoch", "4", "--train_batch_size", "4", "--grad_acc", "2", "--clip", "1.0",
              "--warmup_step", "2", "--correct_bias", "--save_interval", "3", "--eval_interval", "4"]
    main(base_args(train_files, tmp_path / "full", *common))
    main(base_args(train_files, tmp_path / "cut", *common, "--stop_at_step", "5"))
    assert not (tmp_path / "cut" / "model.8.pt").exists()
    main(base_args(train_files, tmp_path / "cut", *common, "--resume"))
    a = load_checkpoint_file(tmp_path / "full" / "model.8.pt")["model_state_dict"]
    b = load_checkpoint_file(tmp_path / "cut" / "model.8.pt")["model_state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = tiny_model(r=4)  # different from the start: training did happen
    assert not torch.equal(a["module.transformer.h.0.attn.c_attn.lora_A"],
                           start.state_dict()["transformer.h.0.attn.c_attn.lora_A"])


def test_packed_resume_is_bit_exact(train_files, tmp_path):
    common = ["--lora_dim", "4", "--lora_alpha", "8", "--lora_dropout", "0.2", "--lr", "0.005", "--max_step", "7",
              "--batching", "packed", "--max_tokens", "64", "--save_interval", "100", "--eval_interval", "100"]
    main(base_args(train_files, tmp_path / "full", *common))
    main(base_args(train_files, tmp_path / "cut", *common, "--stop_at_step", "4"))  # mid-epoch (3 batches/epoch)
    main(base_args(train_files, tmp_path / "cut", *common, "--resume"))
    a, b = (load_checkpoint_file(tmp_path / d / "model.7.pt")["model_state_dict"] for d in ("full", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_padded_and_dynamic_batching_train_the_same(train_files, tmp_path):
    common = ["--lora_dim", "4", "--lora_alpha", "8", "--lr", "0.01", "--max_step", "3", "--label_smooth", "0.1"]
    for mode in ("padded", "dynamic"):
        main(base_args(train_files, tmp_path / mode, *common, "--batching", mode))
    a, b = (load_checkpoint_file(tmp_path / m / "model.3.pt")["model_state_dict"] for m in ("padded", "dynamic"))
    for k in a:  # same examples, same masks: only float summation order differs
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_padding_free_batches_train_as_padded_rows(train_files, tmp_path):
    """--padding_free lays each batch's examples end to end in one row (block-diagonal attention on the
    CPU): the same batches, the same loss, so the same weights up to float summation order (without
    dropout: its masks are drawn over another shape, a different random stream)."""
    common = ["--lora_dim", "4", "--lora_alpha", "8", "--lr", "0.01", "--max_step", "3",
              "--label_smooth", "0.1"]
    main(base_args(train_files, tmp_path / "rows", *common))
    main(base_args(train_files, tmp_path / "flat", *common, "--padding_free"))
    a, b = (load_checkpoint_file(tmp_path / m / "model.3.pt")["model_state_dict"] for m in ("rows", "flat"))
    start = tiny_model(r=4).state_dict()["transformer.h.0.attn.c_attn.lora_B"]
    assert not torch.equal(a["module.transformer.h.0.attn.c_attn.lora_B"], start)  # training moved the weights
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    losses = [[json.loads(line)["loss"] for line in (tmp_path / m / "log.jsonl").read_text().splitlines()
               if json.loads(line)["event"] == "train"] for m in ("rows", "flat")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_padding_free_batch_is_one_row_without_padding_between_examples():
    layout = Layout([([1, 2, 3], [4, 5]), ([6, 7], [8]), ([9] * 6, [10, 11, 12])], 32)
    config = TrainConfig.from_flags(["--train_data", "t", "--valid_data", "v", "--max_step", "1", "--padding_free",
                                     "--train_batch_size", "3"])
    batch = batch_maker(config, None, layout)([2, 0, 1])
    n = [9, 5, 3]
    assert config.attention == "mask" and batch.input_ids.shape == (1, 24)  # 17 tokens, padded to 8
    assert batch.input_ids[0, :17].tolist() == [9] * 6 + [10, 11, 12] + [1, 2, 3, 4, 5] + [6, 7, 8]
    assert batch.position_ids[0, :17].tolist() == [i for k in n for i in range(k)]
    assert batch.cu_seqlens.tolist() == [0, 9, 14, 17, 24]  # three examples and the padding: a fixed count


def test_packed_batching_trains(train_files, tmp_path):
    main(base_args(train_files, tmp_path / "run", "--lora_dim", "0", "--lr", "0.02", "--weight_decay", "0",
                   "--max_epoch", "20", "--batching", "packed", "--max_tokens", "64", "--warmup_step", "4",
                   "--eval_interval", "1000", "--save_interval", "1000"))
    args = json.loads((tmp_path / "run" / "args.json").read_text())
    layout = Layout(read_encoded(train_files / "train.jsonl"), 32)
    per_epoch = BatchPlan(layout.n, 8, 3, "packed", packed=packed_shape(layout.n, 64, 32)).epoch(1)
    assert args["pack_len"] == 32  # the longest example (<= 11 tokens) rounded up to 64, capped at --seq_len
    assert args["max_step_resolved"] == 20 * len(per_epoch) and sum(len(r) for b in per_epoch for r in b) == 16
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["event"] == "train"]
    assert train[0] > 4.0 and train[-1] < 0.5 * train[0]


def test_packed_compile_traces_once_for_every_masked_entry_count(train_files, tmp_path, monkeypatch):
    """--batching packed --compile: one trace serves all batches although K (masked entries) varies,
    since K is marked dynamic. K is rounded to 8 here (64 in real runs) so that it does vary, and the
    compiler backend is a counting eager one to stay fast; without the marking dynamo traces again."""
    import torch._dynamo
    from gpt2_lora.training import config as config_module
    traces, real_compile, real_shape = [], torch.compile, config_module.packed_shape

    def counting(gm, example_inputs):
        traces.append(gm)
        return gm.forward

    monkeypatch.setattr(torch, "compile", lambda fn, mode=None, dynamic=None: real_compile(fn, backend=counting,
                                                                                          dynamic=dynamic))
    monkeypatch.setattr(config_module, "packed_shape",
                        lambda *a, **k: real_shape(*a, **k)._replace(select_multiple=8))
    torch._dynamo.reset()
    main(base_args(train_files, tmp_path / "run", "--lora_dim", "4", "--lora_alpha", "8", "--max_step", "6",
                   "--batching", "packed", "--max_tokens", "32", "--pack_len", "16", "--compile",
                   "--eval_interval", "100", "--save_interval", "100"))
    torch._dynamo.reset()
    layout = Layout(read_encoded(train_files / "train.jsonl"), 32)
    batches = BatchPlan(layout.n, 8, 3, "packed", packed=packed_shape(layout.n, 32, 32, 16)).epoch(1)
    assert len({collate_packed(layout, rows, 16, 2, 8).index.numel() for rows in batches}) > 1
    assert len(traces) == 1


def test_full_finetune_safetensors_and_merged(train_files, tmp_path):
    work = tmp_path / "ft"
    main(base_args(train_files, work, "--lora_dim", "0", "--lr", "0.001", "--max_step", "2", "--save_format",
                   "safetensors"))
    weights = load_checkpoint_file(work / "model.2.safetensors")
    assert "transformer.wte.weight" in weights and len(weights) == len(dict(tiny_model(r=0).named_parameters()))

    lora_work = tmp_path / "lora"
    main(base_args(train_files, lora_work, "--lora_dim", "4", "--lora_alpha", "8", "--lr", "0.01", "--max_step", "3",
                   "--save_merged"))
    # merged model == base (same seed) + trained LoRA weights, as the beam search would load them
    config = GPT2Config.from_hf_config(train_files / "config.json", lora_attn_dim=4, lora_attn_alpha=8)
    torch.manual_seed(3)
    with_lora = GPT2LMModel(config)
    trained = load_checkpoint_file(lora_work / "model.3.pt")["model_state_dict"]
    assert trained and all(k.startswith("module.transformer.") and "lora_" in k for k in trained)
    assert not with_lora.load_state_dict({k[len("module."):]: v for k, v in trained.items()}, strict=False).unexpected_keys
    merged = GPT2LMModel(GPT2Config.from_hf_config(lora_work / "merged" / "config.json"))
    merged.load_weight(load_checkpoint_file(lora_work / "merged"))
    ids = torch.tensor([[5, 9, 127, 65, 69]])
    with torch.no_grad():
        torch.testing.assert_close(merged.eval()(ids), with_lora.eval()(ids), rtol=1e-5, atol=1e-5)


def test_unreadable_resume_file_is_one_line_and_left_in_place(train_files, tmp_path, capsys):
    work = tmp_path / "w"
    work.mkdir()
    (work / "resume.pt").write_bytes(b"not a torch file")
    code, err = run_cli(base_args(train_files, work, "--max_step", "2", "--resume"), capsys)
    assert code == 2 and len(err) == 1 and "resume.pt: not a readable torch checkpoint" in err[0]
    assert (work / "resume.pt").read_bytes() == b"not a torch file"


def test_missing_files_and_existing_run(train_files, tmp_path, capsys):
    argv = base_args(train_files, tmp_path / "w", "--max_step", "1")
    code, err = run_cli([a.replace("train.jsonl", "nope.jsonl") for a in argv], capsys)
    assert code == 2 and len(err) == 1 and "nope.jsonl" in err[0]
    code, err = run_cli([a.replace(str(train_files / "config.json"), "gpt2.xl") for a in argv], capsys)
    assert code == 2 and len(err) == 1 and "gpt2.xl" in err[0]
    main(argv)
    capsys.readouterr()
    code, err = run_cli(argv, capsys)  # a second fresh run would overwrite the first one's checkpoints
    assert code == 2 and "--resume" in err[-1] and len(err) == 1


def test_two_process_ddp_equals_one_process_with_grad_acc(train_files, tmp_path):
    """torchrun --nproc_per_node=2 (gloo, CPU) on packed batches: rank r takes batches r, r+2, ... of
    the same plan, and DDP averages the two gradients, which is what one process does with --grad_acc 2
    over consecutive batches. The LoRA weights after 2 steps must agree to float rounding."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    common = ("--lora_dim", "4", "--lora_alpha", "8", "--lora_dropout", "0", "--max_step", "2",
              "--batching", "packed", "--max_tokens", "32", "--pack_len", "16", "--warmup_step", "1",
              "--lr", "0.01", "--eval_interval", "100", "--save_interval", "100", "--log_interval", "1")
    layout = Layout(read_encoded(train_files / "train.jsonl"), 32)
    plan = BatchPlan(layout.n, 8, 3, "packed", packed=packed_shape(layout.n, 32, 32, 16))
    assert len(plan.epoch(1)) >= 4  # both runs stay inside the first epoch
    main(base_args(train_files, tmp_path / "one", *common, "--grad_acc", "2"))
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "gpt2_lora.train", *base_args(train_files, tmp_path / "two", *common)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = (load_checkpoint_file(tmp_path / run / "model.2.pt")["model_state_dict"] for run in ("one", "two"))
    assert json.loads((tmp_path / "two" / "args.json").read_text())["world_size"] == 2
    lora_keys = [k for k in one if "lora_" in k]
    assert lora_keys and sorted(one) == sorted(two)
    for key in lora_keys:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6)
    assert all(float(one[k].abs().sum()) > 0 for k in lora_keys if "lora_B" in k)  # B moved off its zero init


def test_bad_data_and_work_dir_are_one_line_errors(train_files, tmp_path, capsys):
    bad_id = tmp_path / "bad.jsonl"
    bad_id.write_text('{"context": [5, 127], "completion": [65, 127]}\n{"context": [5, 128], "completion": [1]}\n')
    code, err = run_cli(base_args(train_files, tmp_path / "w", "--max_step", "2", "--train_data", str(bad_id)), capsys)
    assert code == 2 and len(err) == 1 and "bad.jsonl:2: token id 128 in 'context' is outside the vocabulary of 128" in err[0]
    long_valid = tmp_path / "long.jsonl"
    long_valid.write_text(json.dumps({"context": [5] * 40, "completion": [65, 127]}) + "\n")
    code, err = run_cli(base_args(train_files, tmp_path / "w", "--max_step", "2", "--valid_data", str(long_valid)),
                        capsys)
    assert code == 2 and "long.jsonl: no example has a completion token within --seq_len 32" in err[-1]
    (tmp_path / "afile").write_text("x")
    for work_dir, message in ((tmp_path / "afile", "is a file, not a folder"), (tmp_path / "afile" / "sub", "is a file")):
        code, err = run_cli(base_args(train_files, work_dir, "--max_step", "2"), capsys)
        assert code == 2 and len(err) == 1 and message in err[0]
    assert (tmp_path / "afile").read_text() == "x" and not (tmp_path / "w").exists()


def test_earlier_checkpoints_are_never_silently_replaced(train_files, tmp_path, capsys):
    work = tmp_path / "w"
    work.mkdir()
    (work / "model.3.pt").write_bytes(b"an earlier run")
    code, err = run_cli(base_args(train_files, work, "--lora_dim", "4", "--max_step", "2"), capsys)
    assert code == 2 and "already holds a run (model.3.pt)" in err[0]
    assert (work / "model.3.pt").read_bytes() == b"an earlier run"
    (work / "model.final.pt").write_bytes(b"the user's own file")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("x")
    (work / "merged").symlink_to(elsewhere, target_is_directory=True)
    main(base_args(train_files, work, "--lora_dim", "4", "--max_step", "2", "--overwrite", "--save_interval", "100"))
    assert not (work / "model.3.pt").exists() and (work / "model.2.pt").is_file()  # no stale file left beside
    assert (work / "model.final.pt").read_bytes() == b"the user's own file"  # not a name training writes
    assert (elsewhere / "keep.txt").read_text() == "x"  # the link was removed, not what it points to


def test_a_run_stopped_before_its_first_checkpoint_restarts_with_the_same_command(train_files, tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "args.json").write_text("{}")
    (work / "log.jsonl").write_text("")
    main(base_args(train_files, work, "--lora_dim", "4", "--max_step", "2", "--save_interval", "100"))
    assert (work / "model.2.pt").is_file()


def test_overwrite_refuses_to_delete_its_own_inputs(train_files, tmp_path, capsys):
    work = tmp_path / "w"
    main(base_args(train_files, work, "--lora_dim", "0", "--max_step", "2", "--save_interval", "100", "--save_merged"))
    capsys.readouterr()
    merged = work / "merged"
    weights = next(p for p in merged.iterdir() if p.name != "config.json")
    code, err = run_cli(base_args(train_files, work, "--lora_dim", "4", "--max_step", "2", "--overwrite",
                                  "--init_checkpoint", str(weights)), capsys)
    assert code == 2 and len(err) == 1 and "--init_checkpoint" in err[0] and "--overwrite would delete" in err[0]
    assert weights.is_file() and (work / "model.2.pt").is_file()


def test_resume_refuses_another_base_or_a_foreign_file(train_files, tmp_path, capsys):
    base = tmp_path / "base.pt"
    torch.save(GPT2LMModel(GPT2Config(**TINY)).state_dict(), base)
    other = tmp_path / "other.pt"
    torch.save(GPT2LMModel(GPT2Config(**TINY)).state_dict(), other)
    args = ["--lora_dim", "4", "--max_step", "4", "--save_interval", "2", "--stop_at_step", "2"]
    main(base_args(train_files, tmp_path / "w", *args, "--init_checkpoint", str(base)))
    capsys.readouterr()
    code, err = run_cli(base_args(train_files, tmp_path / "w", *args, "--resume", "--init_checkpoint", str(other)),
                        capsys)
    assert code == 2 and "--init_checkpoint" in err[-1] and "other settings" in err[-1]
    code, err = run_cli(base_args(train_files, tmp_path / "w", *args, "--resume"), capsys)  # no base at all
    assert code == 2 and "--init_checkpoint" in err[-1]
    relative = os.path.relpath(base)  # the same file by another name resumes
    main(base_args(train_files, tmp_path / "w", "--lora_dim", "4", "--max_step", "4", "--save_interval", "2",
                   "--resume", "--init_checkpoint", relative))
    assert (tmp_path / "w" / "model.4.pt").is_file()
    train_copy = tmp_path / "train_copy.jsonl"  # same name in the run's args, other contents: refused
    lines = (train_files / "train.jsonl").read_text().splitlines(keepends=True)
    train_copy.write_text("".join(lines))
    main(base_args(train_files, tmp_path / "w2", *args, "--init_checkpoint", str(base), "--train_data",
                   str(train_copy)))
    capsys.readouterr()
    train_copy.write_text("".join(lines[:-1]))
    code, err = run_cli(base_args(train_files, tmp_path / "w2", *args, "--resume", "--init_checkpoint", str(base),
                                  "--train_data", str(train_copy)), capsys)
    assert code == 2 and "the --train_data file's contents" in err[-1]
    torch.save({"model_state_dict": {}}, tmp_path / "w" / "resume.pt")
    code, err = run_cli(base_args(train_files, tmp_path / "w", *args, "--resume", "--max_step", "6"), capsys)
    assert code == 2 and "not a resume file of gpt2_lora.train" in err[-1]


def test_a_diverged_loss_stops_the_run(train_files, tmp_path, capsys):
    code, err = run_cli(base_args(train_files, tmp_path / "w", "--lora_dim", "0", "--max_step", "40", "--lr", "1e30",
                                  "--warmup_step", "0", "--log_interval", "1", "--save_interval", "100"), capsys)
    assert code == 2 and err[-1].startswith("error: the training loss is nan at step")


def step_files(work_dir) -> set[str]:
    return {p.name for p in work_dir.glob("model.*")}


def test_full_fine_tuning_keeps_two_checkpoints_and_resumes_after_pruning(train_files, tmp_path):
    """--lora_dim 0 keeps the newest 2 step checkpoints by default (each is the whole model), plus
    model.best; a run paused with --save_total_limit 1 keeps the checkpoint resume.pt holds and resumes
    bit-exactly."""
    common = ["--lora_dim", "0", "--lr", "0.001", "--max_step", "6", "--save_interval", "1", "--eval_interval", "100"]
    main(base_args(train_files, tmp_path / "full", *common))
    assert step_files(tmp_path / "full") == {"model.5.pt", "model.6.pt", "model.best.pt"}
    cut = tmp_path / "cut"
    main(base_args(train_files, cut, *common, "--save_total_limit", "1", "--stop_at_step", "4"))
    assert step_files(cut) == {"model.4.pt", "model.best.pt"}
    assert torch.load(cut / "resume.pt", weights_only=True)["progress"]["step"] == 4
    main(base_args(train_files, cut, *common, "--save_total_limit", "1", "--resume"))
    assert step_files(cut) == {"model.6.pt", "model.best.pt"}
    a, b = (load_checkpoint_file(d / "model.6.pt")["model_state_dict"] for d in (tmp_path / "full", cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lora = tmp_path / "lora"  # LoRA files are small: all kept unless a limit is given
    main(base_args(train_files, lora, "--lora_dim", "4", "--max_step", "4", "--save_interval", "1",
                   "--eval_interval", "100"))
    assert step_files(lora) == {"model.1.pt", "model.2.pt", "model.3.pt", "model.4.pt", "model.best.pt"}


def test_epoch_checkpoints_are_kept_whatever_the_limit(train_files, tmp_path):
    """16 examples in batches of 8: epochs end at steps 2, 4 and 6. With --keep_epoch_checkpoints those
    stay beside the newest one, and RunDir.epoch_checkpoints() finds them."""
    common = ["--lora_dim", "4", "--max_epoch", "3", "--save_interval", "1", "--eval_interval", "100",
              "--save_total_limit", "1"]
    main(base_args(train_files, tmp_path / "kept", *common, "--keep_epoch_checkpoints", "--save_format", "safetensors"))
    kept = RunDir(tmp_path / "kept")
    assert kept.epoch_checkpoints() == {e: tmp_path / "kept" / f"model.{2 * e}.safetensors" for e in (1, 2, 3)}
    assert set(kept.checkpoints()) == {2, 4, 6} and kept.best_checkpoint() is not None
    described = read_metadata(kept.epoch_checkpoints()[2])  # every checkpoint describes itself
    assert described["lora_dim"] == 4 and described["model_config"]["n_embd"] == TINY["n_embd"]
    main(base_args(train_files, tmp_path / "limited", *common))
    assert set(RunDir(tmp_path / "limited").checkpoints()) == {6}
    assert list(RunDir(tmp_path / "limited").epoch_checkpoints()) == [3]  # the others were pruned


EAGER_COMPILE = """import sys
import torch
real = torch.compile  # dynamo traces (and, under DDP, splits at the gradient buckets) but runs eagerly
torch.compile = lambda fn, mode=None, dynamic=None: real(fn, backend="eager", dynamic=dynamic)
from gpt2_lora.train import main
sys.exit(main(sys.argv[1:]))
"""


def test_packed_compiled_ddp_over_epochs_equals_one_process_with_grad_acc(tmp_path):
    """torchrun --nproc_per_node=2 --batching packed --compile (gloo, CPU; dynamo with an eager backend)
    over 2 epochs equals one process with --grad_acc 2, at each epoch's end checkpoint.

    The equality needs an even number of packed batches per epoch (here 6: 20 examples): ranks take
    turns through one shuffled plan and the batches that do not make a full round are dropped, so that
    every rank steps the same number of times; one process keeps an odd epoch's last batch and
    accumulates it with the next epoch's first, and counts one more batch per epoch for --max_epoch.
    (With an odd count only the steps within the first epoch agree: the test above.)"""
    import subprocess
    import sys
    from pathlib import Path

    data = write_copy_task(tmp_path / "data", n_train=20)
    layout = Layout(read_encoded(data / "train.jsonl"), 32)
    shape = packed_shape(layout.n, 32, 32, 16, dynamic_entries=True)
    assert [len(BatchPlan(layout.n, 8, 3, "packed", packed=shape).epoch(e)) for e in (1, 2)] == [6, 6]
    common = ("--lora_dim", "4", "--lora_alpha", "8", "--lora_dropout", "0", "--max_epoch", "2", "--batching", "packed",
              "--max_tokens", "32", "--pack_len", "16", "--warmup_step", "1", "--lr", "0.01", "--compile",
              "--eval_interval", "100", "--save_interval", "100", "--log_interval", "1")
    (tmp_path / "eager_compile.py").write_text(EAGER_COMPILE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    for run, launcher, extra in (("one", [], ["--grad_acc", "2"]),
                                 ("two", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"], [])):
        done = subprocess.run([sys.executable, *launcher, str(tmp_path / "eager_compile.py"),
                               *base_args(data, tmp_path / run, *common, *extra)],
                              env=env, capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, done.stderr[-2000:]
    one, two = RunDir(tmp_path / "one"), RunDir(tmp_path / "two")
    assert one.epoch_checkpoints().keys() == two.epoch_checkpoints().keys() == {1, 2}
    assert {e: p.name for e, p in two.epoch_checkpoints().items()} == {1: "model.3.pt", 2: "model.6.pt"}
    for epoch in (1, 2):
        a, b = (load_checkpoint_file(r.epoch_checkpoints()[epoch])["model_state_dict"] for r in (one, two))
        assert sorted(a) == sorted(b) and any("lora_" in k for k in a)
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)
    valid = [[r["valid_loss"] for r in log_records(run.path) if r["event"] == "eval"] for run in (one, two)]
    assert len(valid[0]) == 2 and valid[1] == pytest.approx(valid[0], rel=1e-6)  # validation split over ranks
    assert json.loads((tmp_path / "two" / "args.json").read_text())["world_size"] == 2


def test_a_stop_at_step_already_passed_is_refused_not_run_past(train_files, tmp_path, capsys):
    work = tmp_path / "w"
    common = ["--lora_dim", "4", "--lora_alpha", "8", "--max_step", "6", "--save_interval", "100",
              "--eval_interval", "100"]
    main(base_args(train_files, work, *common, "--stop_at_step", "4"))
    for stop in ("4", "2"):  # the same pause again, or an earlier one
        code, err = run_cli(base_args(train_files, work, *common, "--resume", "--stop_at_step", stop), capsys)
        assert code == 2 and err[-1] == (f"error: --stop_at_step {stop}: the run in --work_dir {work} is already at "
                                         "step 4; give a later step, or leave the flag out to continue to step 6")
    assert not (work / "model.6.pt").exists()  # it did not train on to the end
    main(base_args(train_files, work, *common, "--resume"))
    assert (work / "model.6.pt").is_file()


def test_a_finished_run_is_not_reported_finished_when_asked_for_more(train_files, tmp_path, capsys):
    work = tmp_path / "w"
    common = ["--lora_dim", "4", "--lora_alpha", "8", "--save_interval", "100", "--eval_interval", "100"]
    main(base_args(train_files, work, *common, "--max_step", "3"))
    capsys.readouterr()
    assert main(base_args(train_files, work, *common, "--max_step", "3", "--resume")) == 0  # the same run: nothing to do
    assert capsys.readouterr().err.strip().splitlines()[-1] == "training already finished at step 3"
    code, err = run_cli(base_args(train_files, work, *common, "--max_step", "5", "--resume"), capsys)
    assert code == 2 and err[-1].startswith(f"error: --resume: the run in --work_dir {work} finished at step 3, and "
                                            "its schedule with it; a longer run (5 steps) starts again: pass --overwrite")
    assert not (work / "model.5.pt").exists()


def test_an_hf_folder_of_another_size_names_its_config(train_files, tmp_path, capsys):
    """train's model comes from --model_card; an HF folder of another size says which config.json it has."""
    from gpt2_lora.export import write_hf_folder

    folder = write_hf_folder(tiny_model(r=0), tmp_path / "hf").parent
    (tmp_path / "narrow.json").write_text(json.dumps({**TINY, "n_embd": 16}))
    argv = base_args(train_files, tmp_path / "w", "--lora_dim", "4", "--max_step", "1", "--init_checkpoint", str(folder))
    argv[argv.index("--model_card") + 1] = str(tmp_path / "narrow.json")
    code, err = run_cli(argv, capsys)
    assert code == 2 and err[-1].endswith(f"; its {folder / 'config.json'} says n_embd 32: pass --model_card "
                                          f"{folder / 'config.json'}")
    argv[argv.index("--model_card") + 1] = str(folder / "config.json")  # as it says: trains
    assert main(argv) == 0


def test_padding_free_token_budget_batches_pad_their_segment_count():
    """Token-budget batches vary in size: their segment count rounds up to a multiple of 8 (few graph
    shapes), with zero-length segments at the end."""
    layout = Layout([([1] * (2 + i % 5), [2, 3]) for i in range(20)], 32)
    config = TrainConfig.from_flags(["--train_data", "t", "--valid_data", "v", "--max_step", "1", "--padding_free",
                                     "--batching", "bucketed", "--max_tokens", "64"])
    make = batch_maker(config, None, layout)
    for rows in ([0, 1, 2], list(range(3, 12))):
        batch = make(rows)
        assert len(batch.cu_seqlens) == (9 if len(rows) < 8 else 17)
        assert int(batch.cu_seqlens[len(rows)]) == int(layout.n[rows].sum())  # the real segments come first
