"""What the training tests share: a tiny GPT-2 (vocab 128) on an easy copy task, its data files, and
the command lines that train it on the CPU."""

from __future__ import annotations

import json
import random

import pytest
import torch

from gpt2_lora.model import GPT2Config, GPT2LMModel
from gpt2_lora.train import main

TINY = dict(vocab_size=128, n_positions=64, n_ctx=64, n_embd=32, n_layer=2, n_head=2)


def copy_task(n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """Context: 2-4 tokens + "eos" 127; completion: each token + 60, then 127 (easy to over-fit)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        c = [rng.randint(2, 12) for _ in range(rng.randint(2, 4))]
        out.append((c + [127], [t + 60 for t in c] + [127]))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """train.jsonl (16 examples), valid.jsonl (8) and the tiny model's config.json."""
    root = tmp_path_factory.mktemp("train")
    for name, n, seed in (("train", 16, 0), ("valid", 8, 1)):
        with open(root / f"{name}.jsonl", "w") as f:
            for c, p in copy_task(n, seed):
                f.write(json.dumps({"context": c, "completion": p}) + "\n")
    (root / "config.json").write_text(json.dumps(TINY))
    return root


def base_args(files, work_dir, *extra):
    return ["--train_data", str(files / "train.jsonl"), "--valid_data", str(files / "valid.jsonl"),
            "--model_card", str(files / "config.json"), "--seq_len", "32", "--work_dir", str(work_dir),
            "--device", "cpu", "--log_interval", "2", "--random_seed", "3", *extra]


def tiny_model(r=4, seed=0, dropout=0.0) -> GPT2LMModel:
    torch.manual_seed(seed)
    model = GPT2LMModel(GPT2Config(**TINY, lora_attn_dim=r, lora_attn_alpha=8, lora_dropout=dropout))
    with torch.no_grad():  # non-zero B, so LoRA matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return model


def run_cli(argv, capsys):
    """Exit code and stderr lines of a train command that fails."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return exit_info.value.code, err


def log_records(work_dir) -> list[dict]:
    return [json.loads(line) for line in (work_dir / "log.jsonl").read_text().splitlines()]
