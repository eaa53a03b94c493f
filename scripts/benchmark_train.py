#!/usr/bin/env python
"""Training speed: ms per optimizer step of gpt2_lora's training step in several configurations, and of
an HF transformers + PEFT baseline, measured in the same run on the same device.

    python scripts/benchmark_train.py                   # GPT-2 M, r=4, batch 8, E2E-length batches (GPU)
    python scripts/benchmark_train.py --quick           # tiny model on the CPU: checks that it all runs
    python scripts/benchmark_train.py --data data/e2e/train.jsonl --json bench.json

Every configuration starts from a freshly built model with random weights (speed does not depend on
them), runs the paper's recipe (LoRA r=4 on q,v, alpha 32, LoRA dropout 0.1, label smoothing 0.1,
AdamW) over the same batches, warms up on every distinct batch shape (so compilation and CUDA-graph
capture are not timed), then times ``--steps`` steps between two device synchronisations.

Batches: ``--batch`` examples with E2E's token lengths (context ~ N(28.5, 6.7) in [13, 44], completion ~
N(24.8, 7.9) in [2, 77], as GPT-2 BPE encodes E2E train), or real examples from ``--data``. The
token-budget configuration packs length-sorted examples into batches of at most ``--max_tokens``
padded tokens (a throughput mode; it is not the paper's batch size); the packed configuration lays
several examples end to end in each row of fixed (max_tokens // pack_len, pack_len) batches, as
``gpt2_lora.train --batching packed`` does (every batch has the same shape, so it compiles once).

MFU counts the useful FLOPs of real (unpadded) tokens only: per layer and token 2*12*d^2 forward plus
the attention products (2*2*d per attended key, causal), the backward as 1x the forward's matmuls
(activation gradients only: frozen weights need no weight gradients; LoRA's own are negligible) plus
2x the attention products, and the LM head (2*V*d forward + 2*V*d backward) only where the loss needs
it (completion positions). The HF baseline is credited with the same useful FLOPs (it does more work).
Peak: ``--peak_tflops``, or the dense bf16 / fp32 peak of a recognised GPU (H100/H200 SXM: 989 / 67).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpt2_lora.data import read_encoded  # noqa: E402
from gpt2_lora.fileio import atomic_write  # noqa: E402
from gpt2_lora.model import GPT2Config, GPT2LMModel  # noqa: E402
from gpt2_lora import lora  # noqa: E402
from gpt2_lora.recipes import E2E  # noqa: E402
from gpt2_lora.training.batching import Layout  # noqa: E402
from gpt2_lora.training.config import TrainConfig  # noqa: E402
from gpt2_lora.training.distributed import World  # noqa: E402
from gpt2_lora.training.loop import batch_maker, build_loss_model, build_stepper  # noqa: E402
from gpt2_lora.training.step import store_frozen_weights  # noqa: E402
from kernel_profile import kernel_profile  # noqa: E402  (scripts/)

E2E_STEPS = 26290  # 5 epochs of E2E at batch 8 (upstream's max_step)
PAPER = E2E.train  # the paper's training recipe (gpt2_lora/recipes.py)
# The paper's recipe as gpt2_lora.train flags (LoRA r and the batch come from this script's flags)
RECIPE = ("--lora_alpha", str(PAPER.lora_alpha), "--lora_dropout", str(PAPER.lora_dropout),
          "--label_smooth", str(PAPER.label_smooth), "--lr", str(PAPER.lr), "--adam_beta2", str(PAPER.adam_beta2),
          "--adam_epislon", "1e-6", "--weight_decay", str(PAPER.weight_decay), "--correct_bias",
          "--scheduler", PAPER.scheduler, "--warmup_step", str(PAPER.warmup_step), "--max_step", str(E2E_STEPS))
# name -> the gpt2_lora.train flags it measures (bucketed and packed also get --max_tokens); the rules
# they imply (padding, packed shape, compile options, which stepper) are TrainConfig's
PACKED = ("--precision", "bf16", "--compile", "--batching", "packed")
OURS = {
    "ours fp32 padded to seq_len (upstream-like)": ("--precision", "fp32", "--batching", "padded"),
    "ours fp32": ("--precision", "fp32"),
    "ours bf16": ("--precision", "bf16"),
    "ours bf16+compile": ("--precision", "bf16", "--compile"),
    "ours bf16+compile+cudagraphs": ("--precision", "bf16", "--compile", "reduce-overhead"),
    "ours fp32 CUDA graph": ("--precision", "fp32", "--cuda_graphs"),
    "ours bf16 CUDA graph": ("--precision", "bf16", "--cuda_graphs"),
    "ours bf16 CUDA graph padding-free": ("--precision", "bf16", "--cuda_graphs", "--padding_free"),
    "ours bf16+compile token-budget": ("--precision", "bf16", "--compile", "--batching", "bucketed"),
    "ours bf16+compile packed": PACKED,
    "ours bf16+compile packed varlen-attention": (*PACKED, "--packed_attention", "varlen"),
    "ours bf16+compile packed bf16-residual": (*PACKED, "--residual", "bf16"),
    "ours bf16+compile packed bf16-residual varlen-attention": (*PACKED, "--residual", "bf16",
                                                                "--packed_attention", "varlen"),
}
HF = {"HF+PEFT fp32": "fp32", "HF+PEFT bf16 autocast": "bf16"}
PEAKS = {"H100": (989e12, 67e12), "H200": (989e12, 67e12), "A100": (312e12, 19.5e12)}  # dense bf16, fp32


def e2e_like(n: int, rng: np.random.Generator, vocab: int) -> list[tuple[list[int], list[int]]]:
    lc = np.clip(np.rint(rng.normal(28.5, 6.7, n)), 13, 44).astype(int)
    lp = np.clip(np.rint(rng.normal(24.8, 7.9, n)), 2, 77).astype(int)
    eos = vocab - 1
    return [(rng.integers(0, eos, c - 1).tolist() + [eos], rng.integers(0, eos, p - 1).tolist() + [eos])
            for c, p in zip(lc, lp)]


def train_config(name: str, args, device: torch.device) -> TrainConfig:
    """The TrainConfig of configuration ``name`` (HF rows: the plain fp32 one, for their batches)."""
    flags = list(OURS.get(name, OURS["ours fp32"]))
    if "bucketed" in flags or "packed" in flags:
        flags += ["--max_tokens", str(args.max_tokens)]
    return TrainConfig.from_flags(["--train_data", args.data or "(synthetic)", "--valid_data", "(unused)",
                                   "--seq_len", str(args.seq_len), "--train_batch_size", str(args.batch),
                                   "--lora_dim", str(args.lora_dim), "--random_seed", "1", *RECIPE, *flags],
                                  World(device=device))


def make_batches(examples, config: TrainConfig, args) -> list:
    """The first epoch's batches, planned and collated as gpt2_lora.train does for ``config`` (fixed-size
    batches: only as many as the timing needs)."""
    layout = Layout(examples, config.seq_len, config.joint_lm)
    packed = config.packed_shape(layout.n)
    rows = config.batch_plan(layout.n, packed).epoch(1)
    if config.max_tokens is None:
        rows = rows[: max(args.steps, 1) + 8]
    make = batch_maker(config, packed, layout)
    return [make(r) for r in rows]


def useful_flops(batch, config: GPT2Config, lora_training: bool) -> float:
    d, L, V = config.n_embd, config.n_layer, config.vocab_size
    n = torch.tensor(batch.lengths, dtype=torch.float64)
    tokens = float(n.sum())
    keys = float((n * (n + 1) / 2).sum())  # causal attended keys summed over tokens
    matmul = 2 * 12 * d * d * tokens * L
    attention = 2 * 2 * d * keys * L
    forward = matmul + attention
    backward = (matmul if lora_training else 2 * matmul) + 2 * attention
    head = 4 * V * d * batch.n_targets * (1 if lora_training else 1.5)
    return forward + backward + head


def peak_flops(device: torch.device, precision: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (bf16, fp32) in PEAKS.items():
        if key in name:
            return bf16 if precision == "bf16" else fp32
    return None


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, batches, device, steps: int, warm: int,
               shape=lambda b: (tuple(b.input_ids.shape), tuple(b.index.shape))) -> tuple[float, list]:
    """Warm up on every distinct ``shape`` (plus ``warm`` steps), then time ``steps`` steps."""
    seen, warmups = set(), []
    for b in batches:
        key = shape(b)
        if key not in seen:
            seen.add(key)
            warmups.append(b)
    for b in warmups + batches[:warm]:
        step(b)
    sync(device)
    timed = [batches[i % len(batches)] for i in range(steps)]
    start = time.perf_counter()
    for b in timed:
        step(b)
    sync(device)
    return (time.perf_counter() - start) / steps, timed


def run_ours(name, examples, model_config, args, device):
    config = train_config(name, args, device)
    if config.graphs_unavailable:  # time the stepper asked for, not the fallback
        raise RuntimeError(config.graphs_unavailable)
    if config.graphs and device.type != "cuda":
        raise RuntimeError("CUDA graphs need a GPU")
    batches = make_batches(examples, config, args)
    if device.type == "cuda":
        batches = [b.pin_memory() for b in batches]
    torch.manual_seed(0)
    with torch.device(device):
        model = GPT2LMModel(model_config)
    lora.mark_only_lora_as_trainable(model)
    store_frozen_weights(model, config.precision)
    loss_model = build_loss_model(config, model).train()
    stepper = build_stepper(config, loss_model, config.optimizer(model), config.schedule(E2E_STEPS), E2E_STEPS)
    steps = itertools.count()

    def step(batch):
        stepper.micro_step(batch.to(device), update=True)
        stepper.optimizer_step(next(steps))

    seconds, timed = time_steps(step, batches, device, args.steps, args.warmup)
    loss = stepper.read_loss() / max(next(steps), 1)
    if args.profile and device.type == "cuda":
        batches = timed[:args.profile]
        return seconds, timed, loss, kernel_profile(lambda: [step(b) for b in batches], device, len(batches), "step")
    return seconds, timed, loss


def run_hf(name, examples, config, args, device):
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config as HFConfig, GPT2LMHeadModel

    precision = HF[name]
    batches = make_batches(examples, train_config(name, args, device), args)  # ours fp32's batches
    hf_batches = []
    for b in batches:  # pad to the longest, labels -100 outside the completion predictions
        ids = b.input_ids
        n = torch.tensor(b.lengths)
        attention = (torch.arange(ids.size(1))[None] < n[:, None]).long()
        labels = torch.full(ids.shape, -100, dtype=torch.long)
        flat = labels.view(-1)
        real = b.weight > 0
        flat[b.index[real] + 1] = b.target[real]  # HF shifts labels left by one inside the loss
        hf_batches.append((ids, attention, labels, b))
    torch.manual_seed(0)
    hf_config = HFConfig(vocab_size=config.vocab_size, n_positions=config.n_positions, n_embd=config.n_embd,
                         n_layer=config.n_layer, n_head=config.n_head, bos_token_id=config.vocab_size - 1,
                         eos_token_id=config.vocab_size - 1)
    with torch.device(device):
        model = GPT2LMHeadModel(hf_config)
    model = get_peft_model(model, LoraConfig(r=PAPER.lora_dim, lora_alpha=PAPER.lora_alpha,
                                             lora_dropout=PAPER.lora_dropout, target_modules=["c_attn"],
                                             fan_in_fan_out=True, task_type="CAUSAL_LM"))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=PAPER.lr,
                                  weight_decay=PAPER.weight_decay)
    amp = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
           else torch.autocast(device.type, enabled=False))
    losses = []

    def step(item):
        ids, attention, labels, _ = item
        with amp:
            out = model(input_ids=ids.to(device, non_blocking=True), attention_mask=attention.to(device),
                        labels=labels.to(device))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(out.loss.detach())

    seconds, timed = time_steps(step, hf_batches, device, args.steps, args.warmup, shape=lambda item: item[0].shape)
    return seconds, [item[3] for item in timed], float(torch.stack(losses).mean())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny model, CPU, few steps: a smoke test")
    p.add_argument("--model_card", default="gpt2.md")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="GPU: after timing, profile N more steps of our configurations (kernels per step, the top "
                        "kernels by time) into the JSON")
    p.add_argument("--lora_dim", type=int, default=PAPER.lora_dim)
    p.add_argument("--batch", type=int, default=PAPER.train_batch_size)
    p.add_argument("--seq_len", type=int, default=PAPER.seq_len)
    p.add_argument("--steps", type=int, default=50, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=5, help="extra untimed steps after the shape warm-up")
    p.add_argument("--max_tokens", type=int, default=16384, help="token budget of the throughput configuration")
    p.add_argument("--examples", type=int, default=4096, help="synthetic examples to draw batches from")
    p.add_argument("--data", default=None, help="encoded jsonl to take real examples from")
    p.add_argument("--configs", default=None, help="comma-separated subset of: " + ", ".join([*OURS, *HF]))
    p.add_argument("--device", default=None)
    p.add_argument("--peak_tflops", type=float, default=None)
    p.add_argument("--json", default="benchmark_train.json", help="where to write the results")
    args = p.parse_args(argv)
    if args.quick:  # a tiny model and a few steps (see model_and_names)
        args.steps, args.warmup, args.seq_len, args.max_tokens = 3, 1, 128, 512
        args.examples = min(args.examples, 128)
    unknown = [n.strip() for n in (args.configs or "").split(",") if n.strip() and n.strip() not in {**OURS, **HF}]
    if unknown:
        p.error(f"unknown config(s): {', '.join(unknown)}")
    return args


def model_and_names(args, device: torch.device) -> tuple[GPT2Config, list[str]]:
    """The model measured, and the configurations (--configs, else a default for the device)."""
    if args.quick:
        config = GPT2Config(vocab_size=1024, n_positions=128, n_ctx=128, n_embd=64, n_layer=2, n_head=2,
                            lora_attn_dim=args.lora_dim, lora_attn_alpha=PAPER.lora_alpha,
                            lora_dropout=PAPER.lora_dropout)
        default = ["ours fp32 padded to seq_len (upstream-like)", "ours fp32", "ours bf16", "HF+PEFT fp32"]  # compile: --configs
    else:
        config = GPT2Config.resolve(args.model_card, lora_attn_dim=args.lora_dim, lora_attn_alpha=PAPER.lora_alpha,
                                    lora_dropout=PAPER.lora_dropout)
        default = [*OURS, *HF] if device.type == "cuda" else ["ours fp32", "ours bf16", "HF+PEFT fp32"]
    names = [n.strip() for n in args.configs.split(",")] if args.configs else default
    return config, names


def load_examples(args, config: GPT2Config) -> list[tuple[list[int], list[int]]]:
    if args.data:
        return read_encoded(args.data)[: args.examples]
    return e2e_like(args.examples, np.random.default_rng(0), config.vocab_size)


def measure(name, examples, config, args, device, mean_length: float) -> dict:
    """One result row: timings, throughput and MFU of configuration ``name`` (or why it did not run)."""
    flags = OURS.get(name, ())
    precision = flags[flags.index("--precision") + 1] if name in OURS else HF[name]
    row = {"config": name, "precision": precision}
    try:
        runner = run_ours if name in OURS else run_hf
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        seconds, timed, loss, *profiled = runner(name, examples, config, args, device)
        wall = time.perf_counter() - started  # building, compiling, warming up and timing
        tokens = sum(int(b.n_tokens) for b in timed)
        padded = sum(b.input_ids.numel() for b in timed)
        flops = sum(useful_flops(b, config, True) for b in timed)
        peak = peak_flops(device, precision, args.peak_tflops)
        budget = name in OURS and train_config(name, args, device).max_tokens is not None
        row.update(status="ok", ms_per_step=1000 * seconds, wall_s=wall, tokens_per_s=tokens / (seconds * len(timed)),
                   examples_per_step=sum(len(b.examples) for b in timed) / len(timed),
                   padded_fraction=1 - tokens / padded, mean_loss=loss,
                   mfu=(flops / (seconds * len(timed)) / peak) if peak else None,
                   tflops=flops / (seconds * len(timed)) / 1e12,
                   e2e_minutes=(seconds * E2E_STEPS / 60) if not budget
                   else (seconds * math.ceil(42061 * 5 * mean_length / (tokens / len(timed))) / 60),
                   peak_memory_gib=(torch.cuda.max_memory_allocated(device) / 2**30) if device.type == "cuda" else None)
        if profiled:
            row["profile"] = profiled[0]
    except ImportError as err:
        row.update(status=f"skipped: {err.name or err} not installed")
    except Exception as err:  # noqa: BLE001 - one failing configuration must not hide the others
        row.update(status=f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()
    return row


def print_table(results: list[dict], json_path: str) -> None:
    head = f"{'configuration':56s} {'ms/step':>9s} {'tokens/s':>10s} {'ex/step':>7s} {'MFU':>6s} {'5 E2E epochs':>13s} {'wall':>6s}"
    print(head)
    print("-" * len(head))
    for r in results:
        if r["status"] != "ok":
            print(f"{r['config']:56s} {r['status']}")
            continue
        mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "   n/a"
        print(f"{r['config']:56s} {r['ms_per_step']:9.2f} {r['tokens_per_s']:10,.0f} {r['examples_per_step']:7.1f} "
              f"{mfu:>6s} {r['e2e_minutes']:10.1f} min {r['wall_s']:5.0f}s")
    print(f"(written to {json_path}; '5 E2E epochs' = ms/step x {E2E_STEPS} steps, or for the token-budget and packed rows "
          f"the same tokens at its throughput; 'wall' = the whole configuration, compilation included)")


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.quick else "cpu"))
    config, names = model_and_names(args, device)
    examples = load_examples(args, config)
    lengths = np.array([min(len(c) + len(q), args.seq_len) for c, q in examples])
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device_name} | torch {torch.__version__} | model {config.n_layer}x{config.n_embd} "
          f"r={args.lora_dim} | {len(examples)} examples, mean length {lengths.mean():.1f} tokens | batch "
          f"{args.batch} | {args.steps} timed steps", file=sys.stderr)
    results = []
    for name in names:
        row = measure(name, examples, config, args, device, float(lengths.mean()))
        results.append(row)
        print(f"  {name}: {row.get('status')}" + (f", {row['ms_per_step']:.2f} ms/step" if "ms_per_step" in row else ""),
              file=sys.stderr)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        torch._dynamo.reset()
    info = {"device": device_name, "torch": torch.__version__, "model": f"{config.n_layer}x{config.n_embd}",
            "lora_dim": args.lora_dim, "batch": args.batch, "mean_length": float(lengths.mean()), "steps": args.steps,
            "results": results}
    with atomic_write(args.json) as handle:
        handle.write(json.dumps(info, indent=2) + "\n")
    print_table(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
