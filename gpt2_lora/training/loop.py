"""The training loop: ``Trainer(config).run()``.

A run is epochs of micro-batches; every ``--grad_acc`` of them make an optimizer step. After a step
come the log line (``--log_interval``), the checkpoint (``--save_interval``) and validation
(``--eval_interval``); each epoch ends with validation and a checkpoint, as upstream's. The run stops
at ``max_step`` (``RunPlan``), after ``--max_epoch`` epochs, or pauses at ``--stop_at_step``: each
epoch is cut, before it starts, to the micro-batches that remain until then, so the loop needs no
break. Everything written goes through ``RunDir`` (rank 0 only); ``resume.pt`` holds what continues
the run bit for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from tqdm import tqdm

from .. import lora
from ..checkpoint import describe_weights, load_into
from ..data import read_encoded
from ..errors import UserError
from ..loading import config_hint
from ..model import GPT2LMModel
from .batching import Batch, Layout, Prefetcher, collate, collate_packed, round_up
from .config import EVAL_PAD, RunPlan, TrainConfig
from .cudagraph import GraphedStepper
from .distributed import any_rank, barrier, wrap_ddp
from .rundir import RESUME_FILE, RunDir, rng_state, set_rng_state, trainable_state
from .sampling import eval_batches
from .step import LossModel, Stepper, evaluate, store_frozen_weights


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


@dataclass
class Meter:
    """Throughput since the last log line: tokens and micro-batches, and the time they took."""

    start: float = field(default_factory=time.perf_counter)
    tokens: int = 0
    micro: int = 0

    def add(self, tokens: int) -> None:
        self.tokens += tokens
        self.micro += 1

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent in the block (checkpoints, validation) does not count as training time."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - began

    def rates(self, world_size: int, grad_acc: int) -> tuple[float, float]:
        """(tokens/s over all ranks, ms per optimizer step)."""
        elapsed = time.perf_counter() - self.start
        return self.tokens * world_size / elapsed, elapsed * 1000 * grad_acc / max(self.micro, 1)


def build_loss_model(config: TrainConfig, model: torch.nn.Module) -> LossModel:
    return LossModel(model, config.label_smooth, config.precision, config.residual,
                     varlen=config.attention == "varlen")


def build_stepper(config: TrainConfig, loss_model: LossModel, optimizer, schedule, max_step: int):
    """The stepper ``config.stepper`` names. Under torchrun the loss model is wrapped in DDP first and
    then compiled: dynamo splits the compiled graph at DDP's gradient buckets, so the all-reduces still
    overlap the backward; ``no_sync`` keeps the other micro-batches local. Packed batches have one shape
    on every rank, so every rank runs the same compiled code."""
    world = config.world
    if config.stepper == "graphed":
        return GraphedStepper(loss_model, optimizer, schedule, world.device, config.precision, max_step, config.clip)
    ddp = wrap_ddp(loss_model, world) if world.size > 1 else None
    step_fn = loss_model if ddp is None else ddp
    if config.stepper == "compiled":
        # one compilation per distinct shape: allow more than dynamo's default of 8
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 32)
        step_fn = torch.compile(step_fn, mode=config.compile_mode, dynamic=config.compile_dynamic)
    return Stepper(step_fn, optimizer, schedule, world.device, config.precision, config.grad_acc, config.clip,
                   ddp=ddp, cudagraphs=config.graphs and config.stepper == "compiled",
                   dynamic_entries=config.dynamic_entries)


def batch_maker(config: TrainConfig, packed, layout: Layout) -> Callable[[Sequence], Batch]:
    """How a training batch is collated: packed rows of the one (rows, pack_len) shape (``packed``, a
    ``PackedShape``), else examples padded as ``--batching`` and the CUDA graphs need."""
    if packed is not None:
        return lambda rows: collate_packed(layout, rows, *packed)
    if config.padding_free:  # one row; its segment count padded, so the graphs' shapes are (length, entries)
        segments = (lambda rows: config.train_batch_size + 1) if config.max_tokens is None else \
            (lambda rows: round_up(len(rows) + 1, 8))  # token-budget batches vary in size
        return lambda rows: collate_packed(layout, [rows], round_up(int(layout.n[rows].sum()), config.pad_multiple),
                                           1, config.select_multiple, max_segments=segments(rows))
    return lambda rows: collate(layout, rows, config.pad_to, config.pad_multiple, config.select_multiple)


class Trainer:
    """One training run of ``config``: built here (data, model, optimizer, resume state), run by ``run``."""

    def __init__(self, config: TrainConfig):
        self.config, self.world = config, config.world
        self.run_dir = RunDir(config.work_dir, config.save_format, config.save_total_limit,
                              config.keep_epoch_checkpoints)
        self._check_run_dir()
        torch.manual_seed(config.random_seed)
        random.seed(config.random_seed)
        self.model_config = config.model_config()
        self.train_set = self._read("--train_data", config.train_data, config.joint_lm)
        self.valid_set = self._read("--valid_data", config.valid_data)
        self.batch_plan = config.batch_plan(self.train_set.n, config.packed_shape(self.train_set.n))
        self.plan = RunPlan.build(config, self.batch_plan)
        self.make_batch = batch_maker(config, self.plan.packed, self.train_set)
        self.model, self.n_frozen_low = self._build_model()
        self.optimizer = config.optimizer(self.model)
        self.schedule = config.schedule(self.plan.max_step)
        self.progress = Progress()
        resumed = self._resume() if config.resume else None
        self.loss_model = build_loss_model(config, self.model)
        self.stepper = build_stepper(config, self.loss_model, self.optimizer, self.schedule, self.plan.max_step)
        if resumed is not None and "scaler" in resumed and self.stepper.scaler is not None:
            self.stepper.scaler.load_state_dict(resumed["scaler"])
        self.first_step = self.progress.step
        self.pause_step = self._pause_step(config.stop_at_step)
        self.validated_at = -1       # the step of the last validation
        self.saved_at = -1           # the step whose model.<step> file is written
        self.last_saved: Progress | None = None  # the counters resume.pt holds
        self.meter = Meter()
        self.bar: tqdm | None = None
        # every checkpoint describes itself (config, LoRA settings, base file and digest)
        self.metadata = describe_weights(self.model_config, lora_dropout=config.lora_dropout,
                                         model_card=config.model_card,
                                         base_checkpoint=config.init_checkpoint) if self.world.main else None
        self.valid_batches = eval_batches(self.valid_set.n, config.eval_max_tokens, EVAL_PAD, self.world.size,
                                          self.world.rank)

    # -------------------------------------------------------------------------------------- run
    def run(self) -> int:
        p = self.progress
        if p.finished or p.step >= self.plan.max_step:
            self._refuse_extending()
            self.say(f"training already finished at step {p.step}")
            return 0
        self._announce()
        self._start_run_dir()
        self.bar = tqdm(total=self.plan.max_step, initial=p.step, desc="train", unit="step", dynamic_ncols=True,
                        disable=None if self.world.main else True, file=sys.stderr)
        self.model.train()
        try:
            while not self.stopped():
                self.run_epoch()
        except KeyboardInterrupt:
            self.say("interrupted: the last checkpoint is kept; continue with --resume"
                     if self.run_dir.resume_file.exists() else
                     "interrupted before the first checkpoint: nothing to resume; the same command starts again")
            raise
        finally:
            self.bar.close()
        self.finish()
        return 0

    def stopped(self) -> bool:
        """Finished, or paused at --stop_at_step (when it lies ahead of where this run started)."""
        return self.progress.finished or self.progress.step == self.pause_step

    def run_epoch(self) -> None:
        """The rest of the current epoch, up to the step the run stops at; then, if it was all run, its end."""
        p = self.progress
        planned = self.batch_plan.epoch(p.epoch)
        todo = planned[p.batch_in_epoch:p.batch_in_epoch + self._micro_batches_left()]
        loader = Prefetcher(todo, self.make_batch, pin=self.world.device.type == "cuda")
        try:
            for batch in loader:
                self.micro_step(batch)
        finally:
            loader.close()
        if p.batch_in_epoch == len(planned):
            self.end_epoch()

    def micro_step(self, batch: Batch) -> None:
        """Forward and backward one micro-batch; every --grad_acc-th also takes the optimizer step."""
        p, batch = self.progress, batch.to(self.world.device)
        p.micro += 1
        p.batch_in_epoch += 1
        p.tokens += batch.n_tokens
        self.meter.add(batch.n_tokens)
        update = p.micro % self.config.grad_acc == 0
        self.stepper.micro_step(batch, update)
        if update:
            lr = self.stepper.optimizer_step(p.step)
            p.step += 1
            self.after_step(lr)

    def after_step(self, lr: float) -> None:
        """The log line, checkpoint and validation that fall on this step."""
        p, config = self.progress, self.config
        self.bar.update(1)
        if p.step % config.log_interval == 0:
            self.log_train(lr)
        with self.meter.paused():
            if p.step % config.save_interval == 0:
                self.save()
            if p.step % config.eval_interval == 0:
                self.validate()
        if p.step >= self.plan.max_step:
            p.finished = True

    def end_epoch(self) -> None:
        """Validate and checkpoint (upstream saves here too). The counters move to the next epoch first,
        so that resume.pt continues there; the checkpoint is recorded as this epoch's."""
        p = self.progress
        ended = p.epoch
        p.epoch += 1
        p.batch_in_epoch = 0
        if self.config.max_epoch is not None and p.epoch > self.config.max_epoch:
            p.finished = True
        with self.meter.paused():
            self.validate_once()
            self.save(epoch=ended)

    def finish(self) -> None:
        """The last validation and checkpoint; the loss plot and the merged model of a finished run."""
        p = self.progress
        if p.finished:
            self.validate_once()
        self.save()
        if not p.finished:
            self.say(f"stopped at step {p.step} (--stop_at_step); continue with --resume")
        elif self.world.main:
            self.run_dir.plot_loss()
            self.say(f"training finished at step {p.step}: {self.run_dir.weights_path(p.step)} | best valid loss "
                     f"{p.best_valid_loss:.4f} at step {p.best_step}")
            if self.config.save_merged:
                merged = self.run_dir.save_merged(self.model_config, trainable_state(self.model),
                                                  self.config.random_seed, self.config.init_checkpoint)
                self.say(f"merged model: {merged}")

    # ---------------------------------------------------------------------- log, validate, save
    def log_train(self, lr: float) -> None:
        """The mean training loss since the last line (a non-finite one on any rank stops every rank)."""
        p = self.progress
        loss = self.stepper.read_loss() / max(self.meter.micro, 1)
        if any_rank(not math.isfinite(loss), self.world):  # stop rather than train on for hours
            shown = loss if not math.isfinite(loss) else float("nan")
            raise UserError(f"the training loss is {shown} at step {p.step} (--lr too high, or fp16 overflow?); "
                            f"stopped, earlier checkpoints are kept")
        tok_s, ms = self.meter.rates(self.world.size, self.config.grad_acc)
        self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.3g}", tok_s=f"{tok_s:,.0f}", refresh=False)
        if self.world.main:
            self.run_dir.log.add(event="train", step=p.step, epoch=p.epoch, loss=loss, lr=lr,
                                 tokens_per_s=round(tok_s, 1), ms_per_step=round(ms, 2))
            if self.bar.disable:
                self.say(f"| epoch {p.epoch:3d} step {p.step:>7d} | lr {lr:.3g} | ms/step {ms:6.2f} | "
                         f"loss {loss:5.3f} | tokens/s {tok_s:,.0f}")
        self.meter = Meter()

    def validate_once(self) -> None:
        if self.validated_at != self.progress.step:
            self.validate()

    def validate(self) -> None:
        """Validation loss (upstream's mean of --valid_batch_size batch means); a new best is saved."""
        p, started = self.progress, time.perf_counter()
        result = self._evaluate()
        best = result["valid_loss"] < p.best_valid_loss
        if best:
            p.best_valid_loss, p.best_step = result["valid_loss"], p.step
        if self.world.main:
            self.run_dir.log.add(event="eval", step=p.step, epoch=p.epoch, **result, best=best,
                                 seconds=round(time.perf_counter() - started, 2))
            self.run_dir.write_log()
            self.run_dir.plot_loss()
        if best:
            self.save_best()
        self.validated_at = p.step
        self.say(f"| eval at step {p.step:>7d} | valid loss {result['valid_loss']:.4f} | valid ppl "
                 f"{result['valid_ppl']:.3f} | best ppl {math.exp(p.best_valid_loss):.3f} (step {p.best_step})")

    def save(self, epoch: int | None = None) -> None:
        """model.<step> (once per step), the log and resume.pt, then the pruning of old checkpoints;
        ``epoch``: this checkpoint is that epoch's end. Nothing when nothing moved since the last save."""
        p = self.progress
        if epoch is None and p == self.last_saved:
            return
        if self.world.main:
            weights = trainable_state(self.model)
            if self.saved_at != p.step:
                self.run_dir.save_checkpoint(weights, p.step, self.metadata)
            if epoch is not None:
                self.run_dir.mark_epoch_end(epoch, p.step)
            self.run_dir.write_log()
            self.run_dir.save_resume(p.step, self._resume_state(weights))
            self.run_dir.prune()
        self.saved_at, self.last_saved = p.step, dataclasses.replace(p)
        barrier(self.world)

    def save_best(self) -> None:
        if self.world.main:
            self.run_dir.save_checkpoint(trainable_state(self.model), "best", self.metadata)
            self.run_dir.write_log()
        barrier(self.world)

    # ------------------------------------------------------------------------------------ setup
    def say(self, message: str) -> None:
        if self.world.main:
            tqdm.write(message, file=sys.stderr)

    def _check_run_dir(self) -> None:
        """Before any work: the folder can be written, and an earlier run in it is not silently replaced."""
        config, run_dir = self.config, self.run_dir
        run_dir.check_writable()
        earlier = run_dir.holds_a_run()
        if self.world.main and not config.resume and earlier and not config.overwrite:
            raise UserError(f"--work_dir {run_dir.path} already holds a run ({earlier.name}); pass --resume to "
                            f"continue it or --overwrite to start again")
        if config.overwrite:  # none of this run's inputs may be among what --overwrite deletes
            for flag, value in config.inputs().items():
                if value is not None and run_dir.contains(value):
                    raise UserError(f"{flag} {value} belongs to the run that --overwrite would delete; copy it "
                                    f"out of --work_dir first")

    def _read(self, flag: str, path: str, joint_lm: bool = False) -> Layout:
        """A data file laid out for training; examples that the cut at --seq_len leaves without a completion
        token are reported (all of them: an error)."""
        seq_len = self.config.seq_len
        layout = Layout(read_encoded(path, flag, self.model_config.vocab_size), seq_len, joint_lm)
        empty = layout.without_completion()
        if len(empty) == len(layout):
            raise UserError(f"{path}: no example has a completion token within --seq_len {seq_len}")
        if len(empty):
            self.say(f"warning: {path}: {len(empty)} example(s) have no completion token within --seq_len "
                     f"{seq_len} and add nothing to the loss (first: line {empty[0] + 1})")
        return layout

    def _build_model(self) -> tuple[GPT2LMModel, int]:
        """The model on its device, with how many frozen weights are stored in the low precision."""
        config = self.config
        model = GPT2LMModel(self.model_config)  # on the CPU first, so the initialisation follows the seed as upstream
        if config.init_checkpoint is not None:
            try:
                load_into(model, config.init_checkpoint)  # errors name the file
            except UserError as err:
                raise UserError(f"{err}{config_hint(config.init_checkpoint, self.model_config)}") from None
        if config.lora_dim > 0:
            lora.mark_only_lora_as_trainable(model)
        model = model.to(self.world.device)
        return model, store_frozen_weights(model, config.precision)

    def _resume(self) -> dict:
        """Weights, optimizer, counters and RNG states from resume.pt, after checking it is this run's."""
        run_dir = self.run_dir
        state = run_dir.load_resume()
        if state is None:
            raise UserError(f"--resume: no {RESUME_FILE} in --work_dir {run_dir.path} (nothing to resume)")
        changes = self.config.resume_changes(state["args"], self.plan)
        if changes:
            raise UserError(f"--resume: {run_dir.resume_file} was written with other settings ({'; '.join(changes)})")
        named = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        if {n: tuple(t.shape) for n, t in state["weights"].items()} != {n: tuple(p.shape) for n, p in named.items()}:
            raise UserError(f"--resume: {run_dir.resume_file} holds other weights than this model trains "
                            f"(was the model config changed?)")
        with torch.no_grad():
            for name, tensor in state["weights"].items():
                named[name].copy_(tensor)
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = Progress(**state["progress"])
        set_rng_state(state["rng"], self.world.device)
        p = self.progress
        self.say(f"resuming from {run_dir.resume_file} at step {p.step} (epoch {p.epoch}, batch {p.batch_in_epoch})")
        return state

    def _pause_step(self, stop: int | None) -> int | None:
        """--stop_at_step, which must lie ahead of the step a resumed run continues from (else it would
        be silently passed by, and the run trained to its end)."""
        p = self.progress
        if stop is not None and stop <= p.step and not (p.finished or p.step >= self.plan.max_step):
            raise UserError(f"--stop_at_step {stop}: the run in --work_dir {self.run_dir.path} is already at step "
                            f"{p.step}; give a later step, or leave the flag out to continue to step "
                            f"{self.plan.max_step}")
        return stop

    def _refuse_extending(self) -> None:
        """A finished run whose --max_step / --max_epoch now ask for more: its schedule has ended, so
        continuing would not be the longer run; say so rather than report it finished."""
        p, max_epoch = self.progress, self.config.max_epoch
        if p.step < self.plan.max_step and (max_epoch is None or p.epoch <= max_epoch):
            raise UserError(f"--resume: the run in --work_dir {self.run_dir.path} finished at step {p.step}, and its "
                            f"schedule with it; a longer run ({self.plan.max_step} steps) starts again: pass "
                            f"--overwrite (or another --work_dir) instead of --resume")

    def _resume_state(self, weights: dict[str, torch.Tensor]) -> dict:
        state = {"weights": weights, "optimizer": self.optimizer.state_dict(),
                 "progress": dataclasses.asdict(self.progress), "rng": rng_state(self.world.device),
                 "args": self.config.record(self.plan)}
        if self.stepper.scaler is not None:
            state["scaler"] = self.stepper.scaler.state_dict()
        return state

    def _start_run_dir(self) -> None:
        """Rank 0: an --overwrite run clears the earlier one (only now that data, model and flags have all
        been checked), then args.json and the log."""
        if not self.world.main:
            return
        if self.config.overwrite:
            self.run_dir.clear()
        self.run_dir.start(self.config.record(self.plan), self.progress.step if self.config.resume else None)

    def _announce(self) -> None:
        config, m, p = self.config, self.model_config, self.plan
        n_train = sum(t.numel() for t in self.model.parameters() if t.requires_grad)
        frozen = f" ({self.n_frozen_low} frozen weights stored low)" if self.n_frozen_low else ""
        attention = ("variable-length flash attention" if config.attention == "varlen"
                     else "a block-diagonal mask over the whole row, slower than padded rows")
        padding_free = f", padding-free ({attention})" if config.padding_free else ""
        speed = (f", compile {config.compile}" if config.compile else "") + (
            ", CUDA graphs" if config.stepper == "graphed" else "")
        if config.graphs_unavailable:
            self.say(f"note: {config.graphs_unavailable}; using the eager step")
        self.say(f"gpt2-lora train: {m.n_layer} layers x {m.n_embd}, lora r={config.lora_dim}, {n_train:,} trained "
                 f"params | {len(self.train_set):,} train / {len(self.valid_set):,} valid examples | max_step "
                 f"{p.max_step} | {self.world.device} x{self.world.size}, {config.precision}{frozen}, batching "
                 f"{config.batching}{padding_free}{speed}")

    def _evaluate(self) -> dict[str, float]:
        valid = self.valid_set
        batches = Prefetcher(self.valid_batches, lambda idx: collate(valid, idx, None, EVAL_PAD, EVAL_PAD),
                             pin=self.world.device.type == "cuda")
        try:
            result = evaluate(self.loss_model, batches, len(valid), self.world.device, self.config.precision,
                              self.config.valid_batch_size, self.world.size)
        finally:
            batches.close()
        result["valid_ppl"] = math.exp(min(result["valid_loss"], 700))
        return result

    def _micro_batches_left(self) -> int:
        """Micro-batches until the step the run stops at (max_step, or the --stop_at_step pause)."""
        target = self.plan.max_step if self.pause_step is None else min(self.pause_step, self.plan.max_step)
        return (target - self.progress.step) * self.config.grad_acc - self.progress.micro % self.config.grad_acc
