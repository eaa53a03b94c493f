"""The GPU stages of the miniature experiment, each one a stage CLI driven in this process.

* ``pretrain``: a plain language model (``gpt2_lora.train --obj jlm``) from random initialisation on the
  corpus of ``miniature_corpus``; the checkpoint of the best validation loss becomes the base, written
  as an HF folder (``config.json`` + ``model.safetensors``, through ``export.write_hf_folder``);
* ``train_run``: one fine-tuning run with the paper's recipe (``recipe_flags``);
* ``beam_run``: the paper's decoding of the test set (``gpt2_lora.beam``).

Each stage leaves a small JSON behind when it is done, so a rerun skips it; an interrupted training run
is resumed (``--resume``) or started again (``--overwrite``), never trained over silently.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from . import beam, lora, recipes, train
from .checkpoint import load_checkpoint_file
from .errors import UserError
from .fileio import atomic_write
from .model import GPT2Config, GPT2LMModel
from .export import write_hf_folder
from .training.rundir import RESUME_FILE, RunDir

ROOT = Path(__file__).resolve().parent.parent
# The paper's decoding (README of microsoft/LoRA; scripts/run_pipeline.sh): beam 10, length penalty 0.8,
# no-repeat 4, EOS {50256, 628}, 64 new tokens.
DECODING = ("--batch_size", "1", "--seq_len", "512", "--eval_len", "64", "--beam", "10", "--length_penalty", "0.8",
            "--no_repeat_ngram_size", "4", "--repetition_penalty", "1.0", "--eos_token_id", "628")
DECODING_DESC = "beam 10, length penalty 0.8, no-repeat-ngram 4, EOS 50256/628, 64 tokens"
# A plain LM from random weights; lr and weight decay of small-GPT pretraining, gradient clipping for bf16
PRETRAIN_RECIPE = ("--obj", "jlm", "--lora_dim", "0", "--seq_len", "512", "--lr", "0.0004", "--weight_decay", "0.1",
                   "--correct_bias", "--adam_beta2", "0.98", "--scheduler", "linear", "--clip", "1.0",
                   "--label_smooth", "0.0", "--valid_batch_size", "8", "--random_seed", "1")
NEVER = "100000000"  # an interval that never comes: checkpoints only at the end
# recipe flags that the experiment sets itself (paths, length, seed, rank, checkpointing)
_OWN_FLAGS = {"--train_data", "--valid_data", "--model_card", "--work_dir", "--platform", "--max_epoch",
              "--random_seed", "--save_interval", "--lora_dim", "--init_checkpoint"}


# ------------------------------------------------------------------------------------------- recipe
def recipe_flags(task: str) -> list[str]:
    """The paper's ``gpt2_lora.train`` flags for ``task`` (gpt2_lora/recipes.py), less the ones the
    experiment sets itself."""
    flags, out = recipes.task(task).train.train_flags(), []
    i = 0
    while i < len(flags):
        takes_value = i + 1 < len(flags) and not flags[i + 1].startswith("--")
        if flags[i] not in _OWN_FLAGS:
            out += flags[i:i + 1 + takes_value]
        i += 1 + takes_value
    return out


def flag_value(flags: list[str], name: str) -> str:
    return flags[flags.index(name) + 1]


# ------------------------------------------------------------------------------------------ helpers
def call(main, argv: list[str]) -> None:
    """A stage CLI's ``main`` in this process; its UserError propagates instead of exiting."""
    code = main.__wrapped__([str(a) for a in argv])
    if code:
        raise UserError(f"{main.__module__} exited with status {code}")


@contextmanager
def device_timer(device: torch.device, into: dict, key: str):
    """Wall seconds of the block, the device's queued work included."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    into[key] = round(time.perf_counter() - start, 2)


def release(device: torch.device) -> None:
    """Give the memory of a finished stage back before the next one (graphs, compiled code)."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        json.dump(value, handle, indent=1)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def read_log(work_dir: Path) -> list[dict]:
    path = work_dir / "log.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def resume_mode(work_dir: Path) -> list[str]:
    """Continue an interrupted run, or restart one that stopped before its first resumable point."""
    if (work_dir / RESUME_FILE).is_file():
        return ["--resume"]
    return ["--overwrite"] if RunDir(work_dir).holds_a_run() else []


def drop_checkpoints(work_dir: Path) -> None:
    """The weights of a finished stage are not needed once its outputs exist (full ones are 0.5-1.5 GB)."""
    for path in work_dir.glob("model.*"):
        path.unlink()
    (work_dir / RESUME_FILE).unlink(missing_ok=True)


def count_params(model_card: str, lora_dim: int | None) -> tuple[int, int]:
    """(trainable, base total) parameters: every weight for full fine-tuning (``lora_dim`` 0), LoRA's A and
    B for r > 0, none without training (None); the tied LM head is counted once."""
    config = GPT2Config.resolve(model_card, lora_attn_dim=lora_dim or 0)
    with torch.device("meta"):
        model = GPT2LMModel(config)
    total = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    if lora_dim is None:
        return 0, total
    if lora_dim > 0:
        lora.mark_only_lora_as_trainable(model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


# ---------------------------------------------------------------------------------------- pretraining
def pretrain(corpus: Path, model_card: str, steps: int, evals: int, speed_flags: tuple[str, ...],
             work_dir: Path, base_dir: Path, device: torch.device, log_interval: int) -> dict:
    """Train the base and export its best-validation checkpoint to ``base_dir``; what it did, as a dict."""
    argv = ["--train_data", corpus / "train.jsonl", "--valid_data", corpus / "valid.jsonl", "--model_card",
            model_card, *PRETRAIN_RECIPE, "--warmup_step", max(1, steps // 20), "--max_step", steps,
            "--eval_interval", max(1, steps // evals), "--save_interval", steps, "--log_interval", log_interval,
            "--work_dir", work_dir, "--device", str(device), *speed_flags, *resume_mode(work_dir)]
    info: dict = {"steps": steps, "recipe": " ".join(PRETRAIN_RECIPE), "speed_flags": " ".join(speed_flags)}
    with device_timer(device, info, "train_s"):
        call(train.main, argv)
    records = read_log(work_dir)
    evals_seen = [r for r in records if r.get("event") == "eval"]
    best = min(evals_seen, key=lambda r: r["valid_loss"])
    rates = [r["tokens_per_s"] for r in records if r.get("event") == "train"]
    info.update(best_step=best["step"], valid_loss=best["valid_loss"],
                valid_curve=[[r["step"], round(r["valid_loss"], 4)] for r in evals_seen],
                tokens_per_s=round(sum(rates[1:]) / len(rates[1:])) if len(rates) > 1 else None)
    export_base(model_card, work_dir / "model.best.pt", base_dir)
    drop_checkpoints(work_dir)
    if "--compile" in speed_flags:  # the compiled step holds the pretraining model; no later run uses it
        torch._dynamo.reset()
    release(device)
    return info


def export_base(model_card: str, checkpoint: Path, base_dir: Path) -> None:
    """A full checkpoint of ours -> an HF GPT-2 folder (config.json + model.safetensors), put in place whole."""
    config = GPT2Config.resolve(model_card)
    state = load_checkpoint_file(checkpoint).get("model_state_dict", {})
    weights = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    with torch.device("meta"):
        names = {n for n, _ in GPT2LMModel(config).named_parameters()}
    missing = sorted(names - set(weights))
    if missing:  # a weight missing from a full checkpoint would stay random
        raise UserError(f"{checkpoint}: not a full checkpoint of this model (no {', '.join(missing[:3])})")
    model = GPT2LMModel(config)
    model.load_weight(weights)
    write_hf_folder(model, base_dir, weights_name="model.safetensors", overwrite=True)  # put in place whole


# ---------------------------------------------------------------------------------------- fine-tuning
def train_run(data_dir: Path, recipe: list[str], lora_dim: int, seed: int, base_dir: Path | None,
              model_card: str, length: tuple[str, ...], speed_flags: tuple[str, ...], work_dir: Path,
              device: torch.device, log_interval: int) -> dict:
    """One fine-tuning run (``base_dir`` None: from random initialisation); steps, seconds, valid loss and
    the final checkpoint."""
    mode = resume_mode(work_dir)
    argv = ["--train_data", data_dir / "train.jsonl", "--valid_data", data_dir / "valid.jsonl", "--model_card",
            model_card, *recipe, "--lora_dim", lora_dim, *length, "--random_seed", seed, "--save_interval", NEVER,
            "--eval_interval", NEVER, "--log_interval", log_interval, "--work_dir", work_dir, "--device", str(device),
            *speed_flags, *mode]
    if base_dir is not None:
        argv += ["--init_checkpoint", base_dir]
    info: dict = {"resumed": mode == ["--resume"]}  # then train_s holds only this call's part
    with device_timer(device, info, "train_s"):
        call(train.main, argv)
    records = read_log(work_dir)
    last_eval = [r for r in records if r.get("event") == "eval"][-1]
    info.update(steps=last_eval["step"], valid_loss=last_eval["valid_loss"],
                checkpoint=str(work_dir / f"model.{last_eval['step']}.pt"))
    release(device)
    return info


def beam_run(test_data: Path, model_card: str, lora_dim: int, lora_alpha: str, weights: list[str],
             precision: str, out_dir: Path, device: torch.device) -> float:
    """The paper's beam search of the test set into ``out_dir/predict.jsonl``; its wall seconds."""
    argv = ["--data", test_data, *DECODING, "--model_card", model_card, "--lora_dim", lora_dim, "--lora_alpha",
            lora_alpha, "--precision", precision, "--device", str(device), "--work_dir", out_dir, "--output_file",
            "predict.jsonl", *weights]
    tf32 = torch.backends.cuda.matmul.allow_tf32  # beam's fp32 parity path turns TF32 off for the process
    info: dict = {}
    try:
        with device_timer(device, info, "beam_s"):
            call(beam.main, argv)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    release(device)
    return info["beam_s"]
