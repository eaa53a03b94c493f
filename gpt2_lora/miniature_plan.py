"""What the miniature experiment runs, as data: its budgets, the arms of the table, the runs in order,
where their files live, and the clock that decides whether the next run still fits the time limit."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Budget:
    """How big the experiment is. ``full`` fits one H200 call of 9 minutes; ``tiny`` is the CPU test's."""

    name: str
    model: str | tuple                      # a card, or HF config items (written to work/model.json)
    model_desc: str
    pretrain_steps: int
    pretrain_evals: int                     # validations while pretraining; the best one is the base
    pretrain_flags: tuple[str, ...]
    task_length: tuple[str, ...]            # fine-tuning length flags
    task_length_desc: str
    task_flags: tuple[str, ...]
    seeds: tuple[int, ...] = (110, 111, 112)
    beam_precision: str = "fp32"            # the parity path of gpt2_lora.beam
    decoding_overrides: tuple[str, ...] = ()  # beam flags that replace the paper's (tiny only)
    valid_max: int = 2000
    log_interval: int = 1000
    guess_s: dict = field(default_factory=dict)  # a-priori seconds, until measured: pretrain, train_*, beam_*


BUDGETS = {
    "full": Budget(
        name="full", model="gpt2.sm", model_desc="GPT-2 sm (124M parameters: 12 layers of 768)",
        # 7.5 passes over the 3.2M-token corpus (199 packed batches each): 24M tokens, ~80 s at the ~300k
        # tokens/s expected of a full-weight jlm step of sm (LM head at every position), after ~55 s of
        # compilation; the best of 6 validations is kept, so more passes than the data bears cost no quality
        pretrain_steps=1500, pretrain_evals=6,
        pretrain_flags=("--batching", "packed", "--max_tokens", "16384", "--compile", "--precision", "bf16"),
        task_length=("--max_epoch", "1"), task_length_desc="1 epoch instead of the paper's 5",
        task_flags=("--cuda_graphs", "--precision", "bf16"),
        guess_s={"pretrain": 155, "train_e2e": 25, "train_webnlg": 14, "beam_e2e": 8, "beam_webnlg": 16}),
    "tiny": Budget(
        name="tiny", model=(("n_embd", 32), ("n_layer", 2), ("n_head", 2), ("n_positions", 512),
                            ("vocab_size", 50257)),
        model_desc="tiny GPT-2 (2 layers of 32, the CPU test's)", pretrain_steps=6, pretrain_evals=2,
        pretrain_flags=("--batching", "packed", "--max_tokens", "256", "--precision", "fp32"),
        task_length=("--max_step", "3"), task_length_desc="3 steps", task_flags=("--precision", "fp32"),
        seeds=(110, 111), decoding_overrides=("--eval_len", "8"), valid_max=40, log_interval=1,
        guess_s={"pretrain": 5, "train_e2e": 1, "train_webnlg": 1, "beam_e2e": 1, "beam_webnlg": 1}),
}


@dataclass(frozen=True)
class Arm:
    key: str
    label: str
    lora_dim: int | None   # None: not trained at all
    from_base: bool = True


ARMS = {a.key: a for a in (
    Arm("ft", "full fine-tuning", 0), Arm("lora4", "LoRA r=4 (q,v)", 4), Arm("lora1", "LoRA r=1 (q,v)", 1),
    Arm("lora16", "LoRA r=16 (q,v)", 16), Arm("none", "no adaptation (control)", None),
    Arm("scratch", "full fine-tuning from random init", 0, from_base=False))}


@dataclass(frozen=True)
class Run:
    arm: Arm
    seed: int

    @property
    def name(self) -> str:
        return f"{self.arm.key}_s{self.seed}"


def plan(budget: Budget) -> list[Run]:
    """The runs, most important first: a time limit cuts the end of the list, never the FT/LoRA pairs."""
    first = budget.seeds[0]
    runs = [Run(ARMS["none"], first)]
    for seed in budget.seeds:
        runs += [Run(ARMS["ft"], seed), Run(ARMS["lora4"], seed)]
    return runs + [Run(ARMS[k], first) for k in ("lora1", "lora16", "scratch")]


@dataclass(frozen=True)
class Layout:
    """Where everything lives: ``work`` (kept), ``scratch`` (training checkpoints, deleted when used)."""

    work: Path
    scratch: Path

    corpus = property(lambda self: self.work / "corpus")
    base = property(lambda self: self.work / "base")
    base_info = property(lambda self: self.work / "base_info.json")
    settings = property(lambda self: self.work / "settings.json")

    def run_dir(self, task: str, run: Run) -> Path:
        return self.work / task / run.name

    def train_dir(self, task: str, run: Run) -> Path:
        return self.scratch / "train" / task / run.name


class Clock:
    """Time since the start, the measured length of each kind of stage, and what is left of a limit."""

    def __init__(self, budget: Budget, limit: float | None):
        self.start, self.budget, self.limit = time.perf_counter(), budget, limit
        self.seen: dict[str, list[float]] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def record(self, kind: str, seconds: float) -> None:
        self.seen.setdefault(kind, []).append(seconds)

    def guess(self, kind: str) -> float:
        seen = self.seen.get(kind)
        return sum(seen) / len(seen) if seen else float(self.budget.guess_s.get(kind, 0))

    def run_estimate(self, task: str, run: Run) -> float:
        return (0.0 if run.arm.lora_dim is None else self.guess(f"train_{task}")) + self.guess(f"beam_{task}")

    def fits(self, seconds: float) -> bool:
        return self.limit is None or self.elapsed() + seconds <= self.limit
