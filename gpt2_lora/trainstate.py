"""What a training run leaves in ``--work_dir``, and how ``--resume`` reads it back.

* ``model.<step>.pt`` (or ``.safetensors``): the trained weights only (LoRA A/B, or every weight for
  ``--lora_dim 0``), every ``--save_interval`` steps and at each epoch end. The ``.pt`` layout is
  upstream's own (``{'model_state_dict': {'module.transformer.h.0.attn.c_attn.lora_A': ...}}``);
  ``.safetensors`` holds the same tensors flat as ``transformer.…``. ``model.best.*`` is the one with
  the lowest validation loss so far.
* ``resume.pt``: the same weights plus optimizer state, step counters, data position and RNG states;
  replaced atomically at every save, so a crash at any moment leaves the previous one intact.
* ``log.jsonl`` (one record per log / eval event), ``loss.png`` (training and validation
  loss), ``args.json``.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import lora
from .checkpoint import load_checkpoint_file, save_state_dict, save_weights  # noqa: F401 (save_weights: re-exported)
from .errors import UserError
from .fileio import atomic_write
from .model import GPT2Config, GPT2LMModel

RESUME_FILE = "resume.pt"


@dataclass
class Progress:
    """Counters that say where training is; saved in ``resume.pt``."""

    step: int = 0             # optimizer steps taken
    micro: int = 0            # micro-batches consumed (all epochs)
    epoch: int = 1            # current epoch (1-based)
    batch_in_epoch: int = 0   # micro-batches of ``epoch`` already consumed
    tokens: int = 0           # real input tokens seen by this rank
    best_valid_loss: float = math.inf
    best_step: int = -1
    finished: bool = False


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trained weights (requires_grad) by their model names, on the CPU, fp32."""
    return {n: p.detach().to("cpu", torch.float32, copy=True) for n, p in model.named_parameters() if p.requires_grad}


def weights_path(work_dir: Path, tag: str | int, save_format: str) -> Path:
    return work_dir / f"model.{tag}.{'safetensors' if save_format == 'safetensors' else 'pt'}"


def rng_state(device: torch.device) -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_resume(work_dir: Path, weights: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                progress: Progress, device: torch.device, args: dict, scaler=None) -> Path:
    state = {"weights": weights, "optimizer": optimizer.state_dict(), "progress": asdict(progress),
             "rng": rng_state(device), "args": args}
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    return save_state_dict(state, work_dir / RESUME_FILE)


# Flags whose change makes a resumed run a different run.
RESUME_MUST_MATCH = ("train_data", "train_data_sha256", "model_card", "init_checkpoint", "lora_dim", "lora_alpha",
                     "lora_init", "seq_len", "obj", "train_batch_size", "grad_acc", "random_seed", "batching",
                     "max_tokens", "pack_len", "world_size")
_PATH_SETTINGS = ("train_data", "model_card", "init_checkpoint")


def _setting(key: str, value):
    # paths compare as the files they name (a relative and an absolute path to one file are equal)
    if key in _PATH_SETTINGS and isinstance(value, str) and Path(value).exists():
        return str(Path(value).resolve())
    return value


_CHECKPOINT_NAME = re.compile(r"^model\.(\d+|best)\.(pt|safetensors)$")


def run_files(work_dir: Path) -> list[Path]:
    """What an earlier run left in ``work_dir``: the files this module writes, and nothing else."""
    if not work_dir.is_dir():
        return []
    named = [work_dir / n for n in (RESUME_FILE, "log.jsonl", "loss.png", "args.json", "merged")]
    checkpoints = sorted(p for p in work_dir.iterdir() if _CHECKPOINT_NAME.match(p.name))
    return [p for p in named if p.exists() or p.is_symlink()] + checkpoints


def holds_a_run(work_dir: Path) -> Path | None:
    """The first checkpoint (or resume file) of an earlier run; a run stopped before its first checkpoint
    (only args.json / log.jsonl) does not count, so the same command can simply start it again."""
    return next((p for p in run_files(work_dir) if p.name == RESUME_FILE or _CHECKPOINT_NAME.match(p.name)), None)


def clear_run(work_dir: Path) -> None:
    """``--overwrite``: remove an earlier run's files, so none of them is mistaken for the new run's."""
    import shutil

    for path in run_files(work_dir):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def load_resume(work_dir: Path, args: dict) -> dict:
    path = work_dir / RESUME_FILE
    if not path.is_file():
        raise UserError(f"--resume: no {RESUME_FILE} in --work_dir {work_dir} (nothing to resume)")
    state = load_checkpoint_file(path)  # weights_only: tensors, numbers, strings, lists and dicts
    missing = [k for k in ("weights", "optimizer", "progress", "rng", "args") if k not in state]
    if missing:
        raise UserError(f"{path}: not a resume file of gpt2_lora.train (no {', '.join(missing)})")
    saved = state["args"]
    changed = [("the --train_data file's contents" if k == "train_data_sha256" else
                f"--{k} {saved.get(k)!r} -> {args.get(k)!r}") for k in RESUME_MUST_MATCH
               if k in saved and _setting(k, saved.get(k)) != _setting(k, args.get(k))]
    if changed:
        raise UserError(f"--resume: {path} was written with other settings ({'; '.join(changed)})")
    return state


class RunLog:
    """Records of a run, rewritten atomically to ``log.jsonl`` (kept small: one per log interval)."""

    def __init__(self, work_dir: Path, resume_step: int | None = None):
        self.path = work_dir / "log.jsonl"
        self.plot_path = work_dir / "loss.png"
        self.records: list[dict] = []
        if resume_step is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("step", 0) <= resume_step:
                    self.records.append(record)

    def add(self, **record) -> None:
        self.records.append(record)

    def write(self) -> None:
        with atomic_write(self.path) as handle:
            for record in self.records:
                handle.write(json.dumps(record) + "\n")

    def plot(self) -> bool:
        """Training (and validation) loss against steps, to loss.png; False without matplotlib."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            if not getattr(self, "_warned", False):
                print("note: matplotlib is not installed, so no loss.png (pip install matplotlib)",
                      file=sys.stderr)
                self._warned = True
            return False
        train = [(r["step"], r["loss"]) for r in self.records if r.get("event") == "train"]
        valid = [(r["step"], r["valid_loss"]) for r in self.records if r.get("event") == "eval"]
        if not train and not valid:
            return False
        fig, ax = plt.subplots(figsize=(7, 4))
        if train:
            ax.plot(*zip(*train), label="train loss (label-smoothed)", linewidth=1)
        if valid:
            ax.plot(*zip(*valid), "o-", label="valid loss")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_write(self.plot_path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=100)
        plt.close(fig)
        return True


def save_merged(config: GPT2Config, weights: dict[str, torch.Tensor], work_dir: Path, seed: int,
                init_checkpoint: str | None, save_format: str) -> Path:
    """Rebuild the fp32 base (same seed and checkpoint), load the trained weights, and write the merged
    model as an HF folder (config.json + weights with HF GPT-2 names, as upstream load_weight reads),
    replaced whole."""
    saved = torch.get_rng_state()
    torch.manual_seed(seed)
    model = GPT2LMModel(config)
    torch.set_rng_state(saved)
    if init_checkpoint is not None:
        model.load_weight(load_checkpoint_file(init_checkpoint))
    model.load_state_dict(weights, strict=False)
    from .export import write_hf_folder  # the folder `gpt2-lora-export hf` writes (transformers loads it)

    name = "model.safetensors" if save_format == "safetensors" else "pytorch_model.bin"
    return write_hf_folder(model, work_dir / "merged", weights_name=name, overwrite=True,
                           inputs={"--init_checkpoint": init_checkpoint})
