"""Fine-tune GPT-2 with LoRA: ``python -m gpt2_lora.train`` (console script ``gpt2-lora-train``).

Accepts every flag of microsoft/LoRA ``examples/NLG/src/gpt2_ft.py`` with its meaning and default
(including the ``--adam_epislon`` spelling), so the paper's command works with only the script
changed. One process needs no launcher; ``torchrun --nproc_per_node=N`` trains on N GPUs with DDP
(global batch = ``--train_batch_size`` x N, as upstream). Maths: upstream's masked loss with label
smoothing, AdamW, schedules, gradient accumulation and clipping (see ``trainstep`` and ``optim``).

Differences from upstream, all deliberate:

* the schedule advances once per optimizer step, and ``--max_step``/``--warmup_step``/the intervals
  count optimizer steps (upstream: micro-batches; identical with ``--grad_acc 1``);
* validation loss is upstream's mean of per-batch losses over ``--valid_batch_size`` batches, taken
  in file order without upstream's random fill-in examples (upstream shuffles the validation set);
* LoRA layers never merge/unmerge around evaluation, so frozen weights stay bit-identical;
* checkpoints hold the trained weights only (plus ``resume.pt``), ``--save_merged`` writes the full
  merged model; upstream writes the full unmerged model at each epoch end.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import lora
from .batching import (BATCHING_MODES, BatchPlan, Layout, Prefetcher, check_lengths, collate, collate_packed,
                       eval_batches, packed_shape, read_encoded)
from .checkpoint import describe_weights, load_into
from .errors import UserError, cli
from .fileio import atomic_write, check_outputs, file_sha256
from .model import CARDS, GPT2Config, GPT2LMModel
from .optim import SCHEDULERS, AdamW, Schedule, grouped_parameters
from .trainstate import (RESUME_FILE, Progress, RunLog, clear_run, holds_a_run, load_resume, run_files,
                         save_merged, save_resume, save_weights, set_rng_state, trainable_state, weights_path)
from .cudagraph import GraphedStepper, unsupported_reason
from .devices import resolve_device
from .trainstep import (PACKED_ATTENTION, PRECISIONS, RESIDUALS, LossModel, Stepper, check_fast_paths,
                        check_precision, evaluate, store_frozen_weights)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one ``error: ...`` line (via UserError), exit status 2."""

    def error(self, message):
        raise UserError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gpt2-lora-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    up = p.add_argument_group("upstream gpt2_ft.py flags (same names, defaults and meanings)")
    a = up.add_argument
    a("--train_data", required=True, help="encoded training jsonl")
    a("--valid_data", required=True, help="encoded validation jsonl")
    a("--train_batch_size", type=int, default=8, help="training batch size per process")
    a("--valid_batch_size", type=int, default=4, help="validation batch size (defines the reported loss)")
    a("--grad_acc", type=int, default=1, help="gradient accumulation steps")
    a("--clip", type=float, default=0.0, help="gradient norm clipping (0 = off)")
    a("--seq_len", type=int, default=512, help="examples are cut to this many tokens")
    a("--model_card", default="gpt2.md", help=f"one of {', '.join(CARDS)}, or a path to an HF config.json")
    a("--init_checkpoint", default=None, help="pretrained GPT-2 weights (HF .bin/.safetensors or upstream)")
    a("--fp16", action="store_true", help="same as --precision fp16")
    a("--log_interval", type=int, default=100, help="log every N optimizer steps")
    a("--eval_interval", type=int, default=2000, help="validate every N optimizer steps (and each epoch)")
    a("--save_interval", type=int, default=500, help="checkpoint every N optimizer steps (and each epoch)")
    a("--work_dir", default=os.getenv("PT_OUTPUT_DIR", "gpt2_model"), help="output folder")
    a("--lora_dim", type=int, default=0, help="LoRA rank r (0 = full fine-tuning)")
    a("--lora_alpha", type=int, default=128, help="LoRA alpha (scaling = alpha / r)")
    a("--obj", default="clm", choices=["jlm", "clm"], help="clm: loss on the completion; jlm: on everything")
    a("--lora_dropout", type=float, default=0.0, help="dropout on the LoRA input")
    a("--label_smooth", type=float, default=0.0, help="label smoothing epsilon")
    a("--random_seed", type=int, default=10, help="seed for initialisation, data order and dropout")
    a("--lr", type=float, default=0.00001, help="peak learning rate")
    a("--weight_decay", type=float, default=0.01, help="decoupled weight decay (applied after the update)")
    a("--correct_bias", action="store_true", help="Adam bias correction")
    a("--adam_epislon", type=float, default=1e-6, help="Adam epsilon (upstream's spelling)")
    a("--no_decay_bias", action="store_true", help="no weight decay on biases")
    a("--adam_beta1", type=float, default=0.9)
    a("--adam_beta2", type=float, default=0.98)
    a("--scheduler", default="linear", choices=SCHEDULERS, help="lr schedule (inv_sqrt, dev_perf: constant)")
    a("--max_step", type=int, default=None, help="optimizer steps (default: from --max_epoch)")
    a("--max_epoch", type=int, default=None, help="epochs")
    a("--warmup_step", type=int, default=0, help="linear warmup steps")
    a("--i_steps", default="0", help="cycle scheduler: comma-separated steps")
    a("--i_lrs", default="0.00025", help="cycle scheduler: comma-separated learning rates")
    a("--platform", default="k8s", help="ignored: the launcher (torchrun) is read from the environment")
    a("--local_rank", "--local-rank", type=int, default=0, help="set by torch.distributed.launch; LOCAL_RANK wins")
    a("--rank", type=int, default=0, help="ignored (RANK from the environment)")
    a("--world_size", type=int, default=0, help="ignored (WORLD_SIZE from the environment)")
    for name, kind, default in (("--roll_interval", int, -1), ("--roll_lr", float, 0.00001),
                                ("--roll_step", int, 100), ("--eval_epoch", int, 1)):
        a(name, type=kind, default=default, help="accepted for compatibility; unused upstream too")

    new = p.add_argument_group("gpt2-lora additions")
    b = new.add_argument
    b("--precision", choices=PRECISIONS, default=None, help="fp32 (upstream), bf16 or fp16 autocast [fp32]")
    b("--residual", choices=RESIDUALS, default="fp32", help="dtype of the residual stream; bf16 (with "
      "--precision bf16) halves the memory traffic of LayerNorm/residual kernels but rounds the stream [fp32]")
    b("--packed_attention", choices=PACKED_ATTENTION, default="mask", help="with --batching packed: a dense "
      "block-diagonal mask per row, or varlen: the variable-length flash kernel (CUDA, bf16/fp16; slower on "
      "short examples such as E2E's, see BENCHMARKS.md) [mask]")
    b("--compile", nargs="?", const="default", default=None, metavar="MODE",
      help="torch.compile the training step (MODE: default, reduce-overhead, max-autotune, ...)")
    b("--batching", choices=BATCHING_MODES, default="dynamic",
      help="padded: to --seq_len like upstream; dynamic: to the longest in the batch; bucketed: by length; "
      "packed: several examples per row, fixed batch shape (throughput mode, needs --max_tokens)")
    b("--max_tokens", type=int, default=None, help="with --batching bucketed or packed: token budget per batch "
      "instead of --train_batch_size examples")
    b("--pack_len", type=int, default=None, help="with --batching packed: row length [longest training "
      "example, rounded up to 64]")
    b("--cuda_graphs", action="store_true",
      help="replay each step (forward, backward, AdamW) as a CUDA graph: one GPU, --grad_acc 1, fp32/bf16")
    b("--pad_multiple", type=int, default=None, help="round padded lengths up to this [8; 32 with --compile reduce-overhead]")
    b("--resume", action="store_true", help=f"continue from --work_dir/{RESUME_FILE}")
    b("--overwrite", action="store_true", help="start afresh in a --work_dir that holds a run: its checkpoints, "
      "resume.pt, logs and merged/ are deleted (once every flag and input has been checked)")
    b("--lora_init", choices=("default", "gaussian"), default="default", help="LoRA A/B initialisation")
    b("--device", default=None, help="cpu, cuda, cuda:N or N [cuda:LOCAL_RANK if available, else cpu]")
    b("--save_format", choices=("torch", "safetensors"), default="torch", help="checkpoint file format")
    b("--save_merged", action="store_true", help="at the end also write the merged full model to work_dir/merged")
    b("--stop_at_step", type=int, default=None, help="checkpoint and exit after this optimizer step "
      "(continue later with --resume; the schedule still follows --max_step)")
    b("--eval_max_tokens", type=int, default=16384, help="tokens per forward pass during validation")
    return p


# --------------------------------------------------------------------------------------------- setup
def check_args(args) -> None:
    positive = ("train_batch_size", "valid_batch_size", "grad_acc", "log_interval", "eval_interval",
                "save_interval", "eval_max_tokens")
    for name in positive:
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in ("max_step", "max_epoch", "max_tokens", "pad_multiple", "stop_at_step", "pack_len"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name} must be at least 1, got {value}")
    if args.lora_dim < 0:
        raise UserError(f"--lora_dim must be >= 0, got {args.lora_dim}")
    if args.lora_dim > 0 and args.lora_alpha <= 0:
        raise UserError(f"--lora_alpha must be > 0 with --lora_dim {args.lora_dim}, got {args.lora_alpha}")
    for name, low, strict, meaning in (("lr", 0.0, False, ""), ("adam_epislon", 0.0, True, ""),
                                       ("weight_decay", 0.0, False, ""), ("clip", 0.0, False, " (0 = no clipping)")):
        value = getattr(args, name)
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise UserError(f"--{name} must be a finite number {'>' if strict else '>='} {low:g}{meaning}, "
                            f"got {value}")
    if not str(args.work_dir).strip():
        raise UserError("--work_dir is empty")
    if args.resume and args.overwrite:
        raise UserError("--resume continues the run in --work_dir and --overwrite discards it; give one")
    if not 0.0 <= args.lora_dropout < 1.0:
        raise UserError(f"--lora_dropout must be in [0, 1), got {args.lora_dropout}")
    if not 0.0 <= args.label_smooth < 1.0:
        raise UserError(f"--label_smooth must be in [0, 1), got {args.label_smooth}")
    if args.fp16:
        if args.precision not in (None, "fp16"):
            raise UserError(f"--fp16 contradicts --precision {args.precision}")
        args.precision = "fp16"
    args.precision = args.precision or "fp32"
    if args.max_step is None and args.max_epoch is None and args.scheduler != "cycle":
        raise UserError("give --max_epoch or --max_step (how long to train)")
    # CUDA graphs need few distinct shapes; otherwise pad little (compile uses dynamic shapes)
    args.cudagraphs = (bool(args.compile) and "reduce-overhead" in args.compile) or args.cuda_graphs
    if args.cuda_graphs and args.compile:
        raise UserError("--cuda_graphs and --compile are alternatives; give one")
    if args.batching == "packed" and args.max_tokens is None:
        raise UserError("--batching packed needs --max_tokens")
    if args.pad_multiple is None:
        args.pad_multiple = 32 if args.cudagraphs else 8
    try:
        args.i_steps = [int(x) for x in str(args.i_steps).split(",")]
        args.i_lrs = [float(x) for x in str(args.i_lrs).split(",")]
    except ValueError:
        raise UserError("--i_steps / --i_lrs must be comma-separated numbers") from None
    if args.scheduler == "cycle" and args.i_steps[-1] < 1:
        raise UserError(f"--scheduler cycle trains for --i_steps' last step, got {args.i_steps[-1]}; give --i_steps")


def _refuse_inputs_inside(doomed: list[Path], args) -> None:
    """--overwrite deletes the earlier run's files: none of this run's inputs may be among them."""
    doomed = [p.resolve() for p in doomed]
    for flag in ("train_data", "valid_data", "init_checkpoint", "model_card"):
        value = getattr(args, flag)
        if value is None or not Path(value).exists():
            continue
        path = Path(value).resolve()
        if any(path == d or d in path.parents for d in doomed):
            raise UserError(f"--{flag} {value} belongs to the run that --overwrite would delete; copy it "
                            f"out of --work_dir first")


def setup_distributed(args) -> tuple[int, int, torch.device]:
    """(rank, world_size, device): one process, or one of torchrun's (LOCAL_RANK/WORLD_SIZE env)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", args.local_rank))
    device = resolve_device(args.device, local_rank)
    if world_size == 1:
        return 0, 1, device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return torch.distributed.get_rank(), world_size, device


def model_config(args) -> GPT2Config:
    config = GPT2Config.resolve(args.model_card, lora_attn_dim=args.lora_dim, lora_attn_alpha=args.lora_alpha,
                                lora_dropout=args.lora_dropout, lora_init=args.lora_init)
    if args.seq_len > config.n_positions:
        raise UserError(f"--seq_len {args.seq_len} exceeds the model's n_positions={config.n_positions}")
    return config


def build_model(args, config: GPT2Config, device: torch.device) -> GPT2LMModel:
    model = GPT2LMModel(config)  # on the CPU first, so the initialisation follows the seed as upstream
    if args.init_checkpoint is not None:
        load_into(model, args.init_checkpoint)  # errors name the file
    if args.lora_dim > 0:
        lora.mark_only_lora_as_trainable(model)
    return model.to(device)


# ---------------------------------------------------------------------------------------------- main
@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    rank, world_size, device = setup_distributed(args)
    try:
        return train(args, rank, world_size, device)
    finally:
        if world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def train(args, rank: int, world_size: int, device: torch.device) -> int:
    check_precision(device, args.precision)
    check_fast_paths(device, args.precision, args.residual, args.packed_attention, args.batching)
    work_dir = Path(args.work_dir)
    check_outputs({"--work_dir": work_dir / "args.json"})  # the folder is not a file, nor below one
    earlier = holds_a_run(work_dir)
    if rank == 0 and not args.resume and earlier and not args.overwrite:
        raise UserError(f"--work_dir {work_dir} already holds a run ({earlier.name}); pass --resume to "
                        f"continue it or --overwrite to start again")
    if args.overwrite and not args.resume:
        _refuse_inputs_inside(run_files(work_dir), args)
    # the data's digest too: --resume must not continue a run on a file that changed under the same name
    record_args = {**vars(args), "world_size": world_size, "train_data_sha256": file_sha256(args.train_data)}
    say = (lambda *a: tqdm.write(" ".join(map(str, a)), file=sys.stderr)) if rank == 0 else (lambda *a: None)

    torch.manual_seed(args.random_seed)
    random.seed(args.random_seed)

    # data
    config = model_config(args)
    train_layout = Layout(read_encoded(args.train_data, "--train_data", config.vocab_size), args.seq_len,
                          args.obj == "jlm")
    valid_layout = Layout(read_encoded(args.valid_data, "--valid_data", config.vocab_size), args.seq_len)
    check_lengths(train_layout, args.train_data)
    check_lengths(valid_layout, args.valid_data)
    packed = args.batching == "packed"
    shape = None
    if packed:
        shape = packed_shape(train_layout.n, args.max_tokens, args.seq_len, args.pack_len,
                             dynamic_entries=bool(args.compile))
        args.pack_len = record_args["pack_len"] = shape.pack_len
    plan = BatchPlan(train_layout.n, args.train_batch_size, args.random_seed, args.batching, world_size, rank,
                     args.max_tokens, args.pad_multiple, packed=shape)
    pad_to = args.seq_len if args.batching == "padded" else None
    if packed:  # one (rows, pack_len) shape; the masked entries dynamic when compiled, else rounded coarsely
        make_batch = lambda rows: collate_packed(train_layout, rows, *shape)  # noqa: E731
    else:
        select_multiple = 64 if args.cudagraphs else 8
        make_batch = lambda idx: collate(train_layout, idx, pad_to, args.pad_multiple, select_multiple)  # noqa: E731

    # model, optimizer, schedule
    model = build_model(args, config, device)
    n_frozen_low = store_frozen_weights(model, args.precision)
    optimizer = AdamW(grouped_parameters(model, args.no_decay_bias), lr=args.lr,
                      betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epislon,
                      weight_decay=args.weight_decay, correct_bias=args.correct_bias)
    max_step = args.max_step
    if args.scheduler == "cycle":
        max_step = args.i_steps[-1]  # upstream resets max_step for the cycle scheduler
    elif max_step is None:
        max_step = -(-(args.max_epoch * plan.global_batches_per_epoch()) // (world_size * args.grad_acc))
    schedule = Schedule(args.scheduler, args.lr, args.warmup_step, max_step, args.i_steps, args.i_lrs)

    progress = Progress()
    if args.resume:
        state = load_resume(work_dir, record_args)
        named = {n: p for n, p in model.named_parameters() if p.requires_grad}
        saved = {n: tuple(t.shape) for n, t in state["weights"].items()}
        if saved != {n: tuple(p.shape) for n, p in named.items()}:
            raise UserError(f"--resume: {work_dir / RESUME_FILE} holds other weights than this model trains "
                            f"(was the model config changed?)")
        with torch.no_grad():
            for name, tensor in state["weights"].items():
                named[name].copy_(tensor)
        optimizer.load_state_dict(state["optimizer"])
        progress = Progress(**state["progress"])
        set_rng_state(state["rng"], device)
        say(f"resuming from {work_dir / RESUME_FILE} at step {progress.step} (epoch {progress.epoch}, "
            f"batch {progress.batch_in_epoch})")
    if progress.finished or progress.step >= max_step:
        say(f"training already finished at step {progress.step}")
        return 0

    loss_model = LossModel(model, args.label_smooth, args.precision, args.residual,
                           varlen=args.packed_attention == "varlen")
    ddp = None
    step_fn = loss_model
    if world_size > 1:
        # Buffers (LoRA index tables) are equal on every rank: no need to broadcast them each forward.
        DDP = torch.nn.parallel.DistributedDataParallel
        no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                   else {"broadcast_buffers": False})
        ddp = DDP(loss_model, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)
        step_fn = ddp
    if args.compile:
        # packed batches have a fixed shape: specialised code is faster (18% on an H100) than dynamic
        # shapes. Only the number of masked entries varies; it is marked dynamic, so one compilation
        # serves every batch (55 s instead of 150 s for three specialised ones, 0.8% slower steps, H200).
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 32)
        step_fn = torch.compile(step_fn, mode=None if args.compile == "default" else args.compile,
                                dynamic=None if packed else True)
    stepper = Stepper(step_fn, optimizer, schedule, device, args.precision, args.grad_acc, args.clip, ddp=ddp,
                      cudagraphs=args.cudagraphs and bool(args.compile), dynamic_entries=packed and bool(args.compile))
    if args.cuda_graphs:
        reason = unsupported_reason(device, world_size, args.grad_acc, args.precision)
        if reason:
            say(f"note: {reason}; using the eager step")
        else:
            stepper = GraphedStepper(loss_model, optimizer, schedule, device, args.precision, max_step, args.clip)
    if args.resume and "scaler" in state and stepper.scaler is not None:
        stepper.scaler.load_state_dict(state["scaler"])

    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"gpt2-lora train: {config.n_layer} layers x {config.n_embd}, lora r={args.lora_dim}, {n_train:,} trained "
        f"params | {len(train_layout):,} train / {len(valid_layout):,} valid examples | max_step {max_step} | "
        f"{device} x{world_size}, {args.precision}" + (f" ({n_frozen_low} frozen weights stored low)" if n_frozen_low
                                                        else "") + f", batching {args.batching}"
        + (f", compile {args.compile}" if args.compile else "")
        + (", CUDA graphs" if isinstance(stepper, GraphedStepper) else ""))
    if rank == 0:
        if args.overwrite and not args.resume:
            clear_run(work_dir)  # only now that data, model and flags have all been checked
        work_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(work_dir / "args.json") as handle:
            json.dump({**record_args, "max_step_resolved": max_step}, handle, indent=2)
    log = RunLog(work_dir, progress.step if args.resume else None)
    # every checkpoint describes itself (config, LoRA settings, base file and digest): generate/export need no flags
    metadata = describe_weights(config, lora_dropout=args.lora_dropout, model_card=args.model_card,
                                base_checkpoint=args.init_checkpoint) if rank == 0 else None
    valid_batches = eval_batches(valid_layout.n, args.eval_max_tokens, 8, world_size, rank)

    def validate() -> dict:
        batches = Prefetcher(valid_batches, lambda idx: collate(valid_layout, idx, None, 8, 8),
                             pin=device.type == "cuda")
        try:
            result = evaluate(loss_model, batches, len(valid_layout), device, args.precision,
                              args.valid_batch_size, world_size)
        finally:
            batches.close()
        result["valid_ppl"] = math.exp(min(result["valid_loss"], 700))
        return result

    saved_at = [-1]

    def checkpoint(tag=None) -> None:
        if rank == 0:
            weights = trainable_state(model)
            if tag is not None or saved_at[0] != progress.step:
                save_weights(weights, weights_path(work_dir, progress.step if tag is None else tag, args.save_format),
                             metadata)
            log.write()
            if tag is None:
                saved_at[0] = progress.step
                save_resume(work_dir, weights, optimizer, progress, device, record_args, stepper.scaler)
        if world_size > 1:
            torch.distributed.barrier()

    def run_eval() -> None:
        start = time.perf_counter()
        result = validate()
        best = result["valid_loss"] < progress.best_valid_loss
        if best:
            progress.best_valid_loss, progress.best_step = result["valid_loss"], progress.step
        if rank == 0:
            log.add(event="eval", step=progress.step, epoch=progress.epoch, **result, best=best,
                    seconds=round(time.perf_counter() - start, 2))
            log.write()
            log.plot()
        if best:
            checkpoint("best")
        say(f"| eval at step {progress.step:>7d} | valid loss {result['valid_loss']:.4f} | valid ppl "
            f"{result['valid_ppl']:.3f} | best ppl {math.exp(progress.best_valid_loss):.3f} (step {progress.best_step})")

    bar = tqdm(total=max_step, initial=progress.step, desc="train", unit="step", dynamic_ncols=True,
               disable=None if rank == 0 else True, file=sys.stderr)
    last = dict(time=time.perf_counter(), tokens=0, micro=0)
    last_eval = -1
    stop = False
    model.train()
    try:
        while not stop:
            if args.max_epoch is not None and progress.epoch > args.max_epoch:
                break
            batches = plan.epoch(progress.epoch)[progress.batch_in_epoch:]
            loader = Prefetcher(batches, make_batch, pin=device.type == "cuda")
            try:
                for batch in loader:
                    batch = batch.to(device)
                    progress.micro += 1
                    progress.batch_in_epoch += 1
                    progress.tokens += batch.n_tokens
                    last["tokens"] += batch.n_tokens
                    last["micro"] += 1
                    update = progress.micro % args.grad_acc == 0
                    stepper.micro_step(batch, update)
                    if not update:
                        continue
                    lr = stepper.optimizer_step(progress.step)
                    progress.step += 1
                    bar.update(1)
                    if progress.step % args.log_interval == 0:
                        loss = stepper.read_loss() / max(last["micro"], 1)
                        if world_size > 1:  # every rank sees a non-finite loss on any rank, and all stop
                            flag = torch.tensor([0.0 if math.isfinite(loss) else 1.0], device=device)
                            torch.distributed.all_reduce(flag)
                            loss = loss if flag.item() == 0 else float("nan")
                        if not math.isfinite(loss):  # stop rather than train on for hours
                            raise UserError(f"the training loss is {loss} at step {progress.step} (--lr too high, "
                                            f"or fp16 overflow?); stopped, earlier checkpoints are kept")
                        now = time.perf_counter()
                        tok_s = last["tokens"] * world_size / (now - last["time"])
                        ms = (now - last["time"]) * 1000 * args.grad_acc / max(last["micro"], 1)
                        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.3g}", tok_s=f"{tok_s:,.0f}", refresh=False)
                        if rank == 0:
                            log.add(event="train", step=progress.step, epoch=progress.epoch, loss=loss, lr=lr,
                                    tokens_per_s=round(tok_s, 1), ms_per_step=round(ms, 2))
                            if bar.disable:
                                say(f"| epoch {progress.epoch:3d} step {progress.step:>7d} | lr {lr:.3g} | "
                                    f"ms/step {ms:6.2f} | loss {loss:5.3f} | tokens/s {tok_s:,.0f}")
                        last = dict(time=time.perf_counter(), tokens=0, micro=0)
                    pause = time.perf_counter()  # keep checkpoint and eval time out of tokens/s
                    if progress.step % args.save_interval == 0:
                        checkpoint()
                    if progress.step % args.eval_interval == 0:
                        run_eval()
                        last_eval = progress.step
                    last["time"] += time.perf_counter() - pause
                    if progress.step >= max_step:
                        progress.finished = True
                    if progress.finished or progress.step == args.stop_at_step:
                        stop = True
                        break
            finally:
                loader.close()
            if stop:
                break
            # epoch end: validate and checkpoint (upstream saves here too); the last epoch ends below
            progress.epoch += 1
            progress.batch_in_epoch = 0
            if args.max_epoch is not None and progress.epoch > args.max_epoch:
                progress.finished = True
                break
            if last_eval != progress.step:
                run_eval()
                last_eval = progress.step
            checkpoint()
    except KeyboardInterrupt:
        say("interrupted: the last checkpoint is kept; continue with --resume" if (work_dir / RESUME_FILE).exists()
            else "interrupted before the first checkpoint: nothing to resume; the same command starts again")
        raise
    finally:
        bar.close()

    if progress.finished:
        if last_eval != progress.step:
            run_eval()
        checkpoint()  # writes the log too
        if rank == 0:
            log.plot()
            say(f"training finished at step {progress.step}: {weights_path(work_dir, progress.step, args.save_format)}"
                f" | best valid loss {progress.best_valid_loss:.4f} at step {progress.best_step}")
            if args.save_merged:
                merged = save_merged(config, trainable_state(model), work_dir, args.random_seed, args.init_checkpoint,
                                     args.save_format)
                say(f"merged model: {merged}")
    else:
        checkpoint()
        say(f"stopped at step {progress.step} (--stop_at_step); continue with --resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
