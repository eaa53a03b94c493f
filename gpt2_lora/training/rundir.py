"""A training run's folder (``--work_dir``): the files ``gpt2_lora.train`` writes there, and how to find them.

* ``model.<step>.pt`` (or ``.safetensors``): the trained weights only (LoRA A/B, or every weight for
  ``--lora_dim 0``), every ``--save_interval`` steps and at each epoch end. The ``.pt`` layout is
  upstream's own (``{'model_state_dict': {'module.transformer.h.0.attn.c_attn.lora_A': ...}}``);
  ``.safetensors`` holds the same tensors flat as ``transformer.…``. ``model.best.*`` is the one with
  the lowest validation loss so far. Each describes itself (``checkpoint.describe_weights``). With a
  ``save_total_limit`` only the newest step checkpoints are kept (see ``RunDir.prune``).
* ``resume.pt``: the same weights plus optimizer state, step counters, data position and RNG states;
  replaced atomically at every save, so a crash at any moment leaves the previous one intact.
* ``log.jsonl``: one record per log / eval / epoch end (``{"event": "epoch_end", "epoch": e, "step": s,
  "checkpoint": "model.<s>.pt"}``, which ``epoch_checkpoints`` reads); ``loss.png``: training and
  validation loss; ``args.json``: the settings; ``merged/``: the merged full model (``--save_merged``).

``RunDir(path)`` alone (no training) finds a finished run's checkpoints: ``checkpoints()``,
``latest_checkpoint()``, ``best_checkpoint()``, ``epoch_checkpoints()``.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

import torch

from ..checkpoint import load_checkpoint_file, save_state_dict, save_weights
from ..errors import UserError
from ..fileio import atomic_write, check_outputs
from ..model import GPT2Config, GPT2LMModel

RESUME_FILE = "resume.pt"
RESUME_KEYS = ("weights", "optimizer", "progress", "rng", "args")  # and "scaler" with fp16
EXTENSIONS = {"torch": "pt", "safetensors": "safetensors"}
FEW_POINTS = 30  # a loss series with fewer points is drawn with markers (a line alone may not show)
_CHECKPOINT_NAME = re.compile(r"^model\.(\d+|best)\.(pt|safetensors)$")


class RunDir:
    """The files of one run, in ``path``. ``save_total_limit`` (None: keep all) and
    ``keep_epoch_checkpoints`` decide what ``prune`` removes; only rank 0 should write."""

    def __init__(self, path: str | Path, save_format: str = "torch", save_total_limit: int | None = None,
                 keep_epoch_checkpoints: bool = False):
        if save_format not in EXTENSIONS:
            raise ValueError(f"save_format must be one of {', '.join(EXTENSIONS)}, got {save_format!r}")
        if save_total_limit is not None and save_total_limit < 1:
            raise ValueError(f"save_total_limit must be at least 1 (None keeps all), got {save_total_limit}")
        self.path = Path(path)
        self.save_format, self.save_total_limit = save_format, save_total_limit
        self.keep_epoch_checkpoints = keep_epoch_checkpoints
        self.resume_step: int | None = None  # the step resume.pt holds (its checkpoint is never pruned)
        self.log: RunLog | None = None  # opened by start()
        self._said_no_matplotlib = False

    # ------------------------------------------------------------------------------------ names
    @property
    def args_file(self) -> Path:
        return self.path / "args.json"

    @property
    def resume_file(self) -> Path:
        return self.path / RESUME_FILE

    @property
    def log_file(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def plot_file(self) -> Path:
        return self.path / "loss.png"

    @property
    def merged_dir(self) -> Path:
        return self.path / "merged"

    def weights_path(self, tag: int | str) -> Path:
        """``model.<step>.<ext>`` or ``model.best.<ext>`` in this run's format."""
        return self.path / f"model.{tag}.{EXTENSIONS[self.save_format]}"

    # ----------------------------------------------------------------------------------- lookup
    def checkpoints(self) -> dict[int, Path]:
        """The step checkpoints on disk, {step: path}, in step order (this run's format first where a
        step has both)."""
        found: dict[int, Path] = {}
        for path in self._checkpoint_files():
            tag, ext = _CHECKPOINT_NAME.match(path.name).groups()
            if tag != "best" and (int(tag) not in found or ext == EXTENSIONS[self.save_format]):
                found[int(tag)] = path
        return dict(sorted(found.items()))

    def latest_checkpoint(self) -> Path | None:
        steps = self.checkpoints()
        return steps[max(steps)] if steps else None

    def best_checkpoint(self) -> Path | None:
        """``model.best.*`` (the lowest validation loss), this run's format first."""
        candidates = [self.weights_path("best"), *(self.path / f"model.best.{e}" for e in EXTENSIONS.values())]
        return next((p for p in candidates if p.is_file()), None)

    def epoch_checkpoints(self) -> dict[int, Path]:
        """{epoch: checkpoint written at its end}, for the ones still on disk (from log.jsonl)."""
        found = {}
        for record in self._records():
            if record.get("event") == "epoch_end" and (self.path / str(record.get("checkpoint"))).is_file():
                found[int(record["epoch"])] = self.path / record["checkpoint"]
        return dict(sorted(found.items()))

    # ---------------------------------------------------------------------------- an earlier run
    def run_files(self) -> list[Path]:
        """What an earlier run left here: the files this class writes, and nothing else."""
        if not self.path.is_dir():
            return []
        named = [self.resume_file, self.log_file, self.plot_file, self.args_file, self.merged_dir]
        return [p for p in named if p.exists() or p.is_symlink()] + self._checkpoint_files()

    def holds_a_run(self) -> Path | None:
        """The first checkpoint (or resume file) of an earlier run; a run stopped before its first checkpoint
        (only args.json / log.jsonl) does not count, so the same command can simply start it again."""
        return next((p for p in self.run_files() if p.name == RESUME_FILE or _CHECKPOINT_NAME.match(p.name)), None)

    def clear(self) -> None:
        """Remove an earlier run's files (``--overwrite``), so none is mistaken for the new run's; a
        ``merged`` symlink is removed, not what it points to."""
        for path in self.run_files():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def contains(self, path: str | Path) -> bool:
        """Whether ``path`` is one of the files ``clear`` would delete, or lies inside one."""
        target = Path(path).resolve()
        return any(target == d or d in target.parents for d in (p.resolve() for p in self.run_files()))

    # ---------------------------------------------------------------------------------- writing
    def check_writable(self, what: str = "--work_dir") -> None:
        """The folder is not a file, nor below one (before any work)."""
        check_outputs({what: self.args_file})

    def start(self, settings: Mapping[str, Any], resume_step: int | None = None) -> None:
        """Create the folder, write args.json, and open the log (a resumed run keeps its records up to
        ``resume_step``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.args_file) as handle:
            json.dump(dict(settings), handle, indent=2)
        self.log = RunLog(self.log_file, resume_step)

    def save_checkpoint(self, weights: Mapping[str, torch.Tensor], tag: int | str,
                        metadata: Mapping[str, Any] | None = None) -> Path:
        """``model.<tag>.<ext>`` (a step or "best"), self-describing through ``metadata``."""
        return save_weights(weights, self.weights_path(tag), metadata)

    def mark_epoch_end(self, epoch: int, step: int) -> None:
        """Record that ``model.<step>`` is the checkpoint of ``epoch``'s end (in log.jsonl)."""
        self.log.add(event="epoch_end", epoch=epoch, step=step, checkpoint=self.weights_path(step).name)

    def save_resume(self, step: int, state: Mapping[str, Any]) -> Path:
        """``resume.pt`` for continuing after ``step``: RESUME_KEYS (plus "scaler" with fp16)."""
        missing = [k for k in RESUME_KEYS if k not in state]
        if missing:
            raise ValueError(f"resume state lacks {', '.join(missing)}")
        path = save_state_dict(dict(state), self.resume_file)
        self.resume_step = step
        return path

    def load_resume(self) -> dict | None:
        """The resume state (None when there is no resume.pt); a file of something else is a UserError."""
        if not self.resume_file.is_file():
            return None
        state = load_checkpoint_file(self.resume_file)  # weights_only: tensors, numbers, strings, lists, dicts
        missing = [k for k in RESUME_KEYS if k not in state]
        if missing:
            raise UserError(f"{self.resume_file}: not a resume file of gpt2_lora.train (no {', '.join(missing)})")
        self.resume_step = int(state["progress"].get("step", 0))
        return state

    def prune(self) -> list[Path]:
        """Delete the step checkpoints beyond the newest ``save_total_limit``, never the one resume.pt holds,
        nor (``keep_epoch_checkpoints``) an epoch's; ``model.best.*`` is not a step checkpoint. Returns
        the deleted files."""
        if self.save_total_limit is None:
            return []
        steps = list(self.checkpoints())
        keep = set(steps[-self.save_total_limit:])
        if self.resume_step is not None:
            keep.add(self.resume_step)
        if self.keep_epoch_checkpoints:
            keep |= {int(r["step"]) for r in self._records() if r.get("event") == "epoch_end"}
        doomed = [p for p in self._checkpoint_files() if _step_of(p) is not None and _step_of(p) not in keep]
        for path in doomed:
            path.unlink()
        return doomed

    def write_log(self) -> None:
        self.log.write()

    def plot_loss(self) -> bool:
        """loss.png from the log; False without points, or without matplotlib (said once)."""
        try:
            return plot_loss(self.log.records, self.plot_file)
        except ImportError:
            if not self._said_no_matplotlib:
                print("note: matplotlib is not installed, so no loss.png (pip install matplotlib)", file=sys.stderr)
                self._said_no_matplotlib = True
            return False

    def save_merged(self, config: GPT2Config, weights: Mapping[str, torch.Tensor], seed: int,
                    init_checkpoint: str | None) -> Path:
        """Rebuild the fp32 base (same seed and checkpoint), load the trained weights, and write the merged
        model as an HF folder (config.json + weights with HF GPT-2 names, as upstream load_weight reads),
        replaced whole."""
        saved = torch.get_rng_state()
        torch.manual_seed(seed)
        model = GPT2LMModel(config)
        torch.set_rng_state(saved)
        if init_checkpoint is not None:
            model.load_weight(load_checkpoint_file(init_checkpoint))
        model.load_state_dict(dict(weights), strict=False)
        from ..export import write_hf_folder  # the folder `gpt2-lora-export hf` writes (transformers loads it)

        name = "model.safetensors" if self.save_format == "safetensors" else "pytorch_model.bin"
        return write_hf_folder(model, self.merged_dir, weights_name=name, overwrite=True,
                               inputs={"--init_checkpoint": init_checkpoint})

    # ---------------------------------------------------------------------------------- helpers
    def _checkpoint_files(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if _CHECKPOINT_NAME.match(p.name))

    def _records(self) -> list[dict]:
        return self.log.records if self.log is not None else RunLog(self.log_file, resume_step=-1).records


def _step_of(path: Path) -> int | None:
    tag = _CHECKPOINT_NAME.match(path.name).group(1)
    return None if tag == "best" else int(tag)


class RunLog:
    """Records of a run, rewritten atomically to ``log.jsonl`` (kept small: one per log interval)."""

    def __init__(self, path: Path, resume_step: int | None = None):
        """A new log, or (``resume_step`` given) the records of ``path`` up to that step; -1: all records."""
        self.path = path
        self.records: list[dict] = []
        if resume_step is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if resume_step < 0 or record.get("step", 0) <= resume_step:
                    self.records.append(record)

    def add(self, **record) -> None:
        self.records.append(record)

    def write(self) -> None:
        with atomic_write(self.path) as handle:
            for record in self.records:
                handle.write(json.dumps(record) + "\n")


def series_style(n_points: int) -> dict[str, Any]:
    """Line style of a loss series: markers when it has few points (one point alone draws no line)."""
    return {"marker": "o", "markersize": 4} if n_points < FEW_POINTS else {"marker": None}


def loss_figure(records: list[dict]):
    """The matplotlib figure of training (label-smoothed) and validation loss against steps; None when
    the records hold no loss."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if r.get("event") == "train"]
    valid = [(r["step"], r["valid_loss"]) for r in records if r.get("event") == "eval"]
    if not train and not valid:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss (label-smoothed)", linewidth=1, **series_style(len(train)))
    if valid:
        ax.plot(*zip(*valid), label="valid loss", **series_style(len(valid)))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_loss(records: list[dict], path: Path) -> bool:
    """Write ``loss_figure(records)`` to ``path`` as PNG; False when there is no point to draw (ImportError
    without matplotlib)."""
    fig = loss_figure(records)
    if fig is None:
        return False
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------- what is saved
def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trained weights (requires_grad) by their model names, on the CPU, fp32."""
    return {n: p.detach().to("cpu", torch.float32, copy=True) for n, p in model.named_parameters() if p.requires_grad}


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
