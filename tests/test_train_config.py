"""training.config (and training.flags): the flags' checks (one-line errors naming the flag), the values derived from them
(precision, padding, which stepper runs), library errors reported in flag names, and the resume key."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from gpt2_lora.errors import UserError
from gpt2_lora.training.config import RESUME_FLAGS, RunPlan, TrainConfig
from gpt2_lora.model import FLASH_VARLEN
from gpt2_lora.training.distributed import World
from gpt2_lora.training.flags import build_parser
from helpers import base_args, run_cli


@pytest.mark.parametrize("extra,message", [
    (["--max_epoch", "1", "--precision", "fp8"], "--precision"),
    (["--max_epoch", "1", "--lora_dim", "-1"], "--lora_dim"),
    ([], "--max_epoch or --max_step"),
    (["--max_epoch", "1", "--fp16"], "CUDA"),
    (["--max_epoch", "1", "--init_checkpoint", "/nonexistent/gpt2.bin"], "not found"),
    (["--max_epoch", "1", "--resume"], "nothing to resume"),
    (["--max_epoch", "1", "--max_tokens", "64"], "--batching bucketed"),
    (["--max_epoch", "1", "--batching", "packed"], "--batching packed needs --max_tokens"),
    (["--max_epoch", "1", "--batching", "packed", "--max_tokens", "64", "--pack_len", "8"], "--pack_len 8"),
    (["--max_epoch", "1", "--batching", "packed", "--max_tokens", "16", "--pack_len", "32"], "less than one row"),
    (["--max_epoch", "1", "--residual", "bf16"], "--residual bf16 needs --precision bf16"),
    (["--max_epoch", "1", "--packed_attention", "varlen"], "needs --batching packed"),
    (["--max_epoch", "1", "--batching", "packed", "--max_tokens", "64", "--precision", "bf16",
      "--packed_attention", "varlen"], "needs a CUDA device"),
    (["--max_epoch", "1", "--lr", "nan"], "--lr must be a finite number >= 0"),
    (["--max_epoch", "1", "--adam_epislon", "0"], "--adam_epislon must be a finite number > 0"),
    (["--max_epoch", "1", "--clip", "-1"], "--clip must be a finite number >= 0 (0 = no clipping)"),
    (["--max_epoch", "1", "--weight_decay", "-0.1"], "--weight_decay must be"),
    (["--max_epoch", "1", "--lora_dim", "4", "--lora_alpha", "0"], "--lora_alpha must be > 0"),
    (["--max_epoch", "1", "--resume", "--overwrite"], "give one"),
    (["--scheduler", "cycle"], "--scheduler cycle trains for --i_steps' last step"),
])
def test_bad_flags_are_one_line_errors(train_files, tmp_path, capsys, extra, message):
    code, err = run_cli(base_args(train_files, tmp_path / "w", *extra), capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def config_of(*flags, device="cpu", world_size=1, train_data="train.jsonl") -> TrainConfig:
    """A TrainConfig of these flags (plus the required ones), as if run on ``device`` by ``world_size`` ranks."""
    return TrainConfig.from_flags(["--train_data", train_data, "--valid_data", "valid.jsonl", "--max_step", "10",
                                   *flags], World(0, world_size, torch.device(device)))


@pytest.mark.parametrize("flags,message", [
    (["--adam_beta1", "1.0"], "--adam_beta1 must be in [0, 1), got 1.0"),
    (["--adam_beta2", "-0.1"], "--adam_beta2 must be in [0, 1)"),
    (["--warmup_step", "-1"], "--warmup_step must be >= 0, got -1"),
    (["--seq_len", "1"], "--seq_len must be at least 2, got 1"),
    (["--save_total_limit", "-1"], "--save_total_limit must be >= 0 (0 = keep all)"),
    (["--scheduler", "cycle", "--i_steps", "0,5", "--i_lrs", "0.1"], "--i_steps and --i_lrs must list the same"),
    (["--i_steps", "1,x"], "--i_steps / --i_lrs must be comma-separated numbers"),
    (["--fp16", "--precision", "bf16"], "--fp16 contradicts --precision bf16"),
    (["--cuda_graphs", "--compile"], "alternatives; give one"),
    (["--padding_free", "--batching", "padded"], "--padding_free needs --batching dynamic or bucketed"),
    (["--padding_free", "--batching", "packed", "--max_tokens", "64"], "rows already packed"),
])
def test_flag_checks_before_any_work(flags, message):
    """Checked from the flags alone (no file is read): what the library classes would refuse later."""
    with pytest.raises(UserError) as err:
        config_of(*flags)
    assert message in str(err.value)


def test_which_stepper_runs():
    """--cuda_graphs falls back to the eager step where a graph cannot run, and says why."""
    graphs = ("--cuda_graphs", "--precision", "bf16")
    assert config_of().stepper == "eager" and config_of().graphs_unavailable is None
    assert config_of("--compile").stepper == "compiled"
    assert config_of(*graphs, device="cuda").stepper == "graphed"
    for config, reason in ((config_of(*graphs), "CUDA graphs need a CUDA device"),
                           (config_of(*graphs, device="cuda", world_size=2), "single process"),
                           (config_of(*graphs, "--grad_acc", "2", device="cuda"), "--grad_acc 1"),
                           (config_of("--cuda_graphs", "--fp16", device="cuda"), "fp16 loss scaling")):
        assert config.stepper == "eager" and reason in config.graphs_unavailable


def test_derived_values():
    plain = config_of()
    assert (plain.precision, plain.pad_multiple, plain.select_multiple, plain.pad_to) == ("fp32", 8, 8, None)
    assert config_of("--fp16", device="cuda").precision == "fp16"
    for flags in (("--cuda_graphs",), ("--compile", "reduce-overhead")):  # few shapes for the graphs
        config = config_of(*flags)
        assert config.graphs and (config.pad_multiple, config.select_multiple) == (32, 64)
    assert config_of("--cuda_graphs", "--pad_multiple", "16").pad_multiple == 16  # given: wins
    assert config_of("--batching", "padded", "--seq_len", "40").pad_to == 40
    packed = config_of("--batching", "packed", "--max_tokens", "64", "--compile")
    assert packed.compile_dynamic is None and packed.dynamic_entries and packed.compile_mode is None
    assert config_of("--compile").compile_dynamic is True and not config_of("--compile").dynamic_entries
    assert config_of("--compile", "max-autotune").compile_mode == "max-autotune"
    cycle = config_of("--scheduler", "cycle", "--i_steps", "0,4,9", "--i_lrs", "0.1,0.2,0.3")
    assert (cycle.i_steps, cycle.i_lrs) == ((0, 4, 9), (0.1, 0.2, 0.3)) and cycle.max_step_for(100) == 9
    assert config_of().max_step_for(100) == 10  # --max_step
    by_epochs = TrainConfig.from_flags(["--train_data", "t", "--valid_data", "v", "--max_epoch", "3",
                                        "--grad_acc", "2"], World(0, 2, torch.device("cpu")))
    assert by_epochs.max_step_for(7) == 6  # ceil(3 epochs * 7 batches / (2 ranks * 2 micro-batches))


def test_checkpoint_limit_defaults_to_two_for_full_fine_tuning():
    assert config_of("--lora_dim", "4").save_total_limit is None  # LoRA files are small: all kept
    assert config_of("--lora_dim", "0").save_total_limit == 2     # each is the whole model
    assert config_of("--save_total_limit", "0").save_total_limit is None
    assert config_of("--lora_dim", "4", "--save_total_limit", "3").save_total_limit == 3
    assert "2 with --lora_dim 0" in " ".join(build_parser().format_help().split())


def test_library_errors_come_back_in_flag_names():
    """sampling/optim raise ValueError in their own parameter names; the config names the flags."""
    lengths = np.array([5, 11, 7])
    with pytest.raises(UserError, match="--max_tokens 16 is less than one row of --pack_len 32"):
        config_of("--batching", "packed", "--max_tokens", "16", "--pack_len", "32").packed_shape(lengths)
    with pytest.raises(UserError, match="an example of 11 tokens does not fit --pack_len 8"):
        config_of("--batching", "packed", "--max_tokens", "64", "--pack_len", "8").packed_shape(lengths)
    shape = config_of("--batching", "packed", "--max_tokens", "64", "--compile").packed_shape(lengths)
    assert shape == (64, 1, 64, 1 * (64 // 5 + 1))  # longest 11 rounded up to 64 (capped at --seq_len 512)
    config = config_of()
    with pytest.raises(UserError, match="--warmup_step must be >= 0, got -1"):
        dataclasses.replace(config, warmup_step=-1).schedule(10)
    with pytest.raises(UserError, match=r"--adam_beta1 must be in \[0, 1\), got 1.5"):
        dataclasses.replace(config, adam_beta1=1.5).optimizer(torch.nn.Linear(2, 2))
    with pytest.raises(UserError, match="--train_batch_size must be at least 1, got 0"):
        dataclasses.replace(config, train_batch_size=0).batch_plan(lengths, None)


def test_resume_key_names_what_makes_another_run(tmp_path, monkeypatch):
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    config = config_of("--lora_dim", "4", train_data=str(data))
    plan = RunPlan(max_step=10, train_data_sha256="abc")
    key = config.resume_key(plan)
    assert set(RESUME_FLAGS) < set(key) and (key["world_size"], key["pack_len"], key["lora_dim"]) == (1, None, 4)
    assert config.resume_changes(key, plan) == []
    assert config.resume_changes({**key, "train_data": "train.jsonl"}, plan) == []  # the same file, relative
    assert config.resume_changes({"lora_dim": 8, "obj": "clm"}, plan) == ["--lora_dim 8 -> 4"]  # others: not recorded
    assert config.resume_changes({**key, "train_data_sha256": "def"}, plan) == ["the --train_data file's contents"]
    two = config_of("--lora_dim", "4", train_data=str(data), world_size=2)
    assert two.resume_changes(key, plan) == ["--world_size 1 -> 2"]
    record = config.record(plan)
    assert json.loads(json.dumps(record)) == record  # plain JSON (args.json, resume.pt)
    assert record["max_step_resolved"] == 10 and record["device"] == "cpu" and record["precision"] == "fp32"



def test_padding_free_attends_through_the_flash_kernel_where_it_runs():
    on_gpu = config_of("--cuda_graphs", "--padding_free", "--precision", "bf16", device="cuda")
    assert on_gpu.stepper == "graphed" and on_gpu.pad_multiple == 32
    assert on_gpu.attention == ("varlen" if FLASH_VARLEN is not None else "mask")
    assert config_of("--padding_free", device="cuda").attention == "mask"  # fp32: no flash kernel
    assert config_of("--padding_free", "--precision", "bf16").attention == "mask"  # the CPU
