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

from gpt2_lora import lora  # noqa: E402
from gpt2_lora.fileio import atomic_write  # noqa: E402
from gpt2_lora.cudagraph import GraphedStepper  # noqa: E402
from gpt2_lora.batching import (Layout, collate, collate_packed, pack_rows, packed_shape,  # noqa: E402
                                read_encoded, token_budget_batches)
from gpt2_lora.model import GPT2Config, GPT2LMModel  # noqa: E402
from gpt2_lora.optim import AdamW, Schedule, grouped_parameters  # noqa: E402
from gpt2_lora.recipes import E2E  # noqa: E402
from gpt2_lora.trainstep import LossModel, Stepper, store_frozen_weights  # noqa: E402

E2E_STEPS = 26290  # 5 epochs of E2E at batch 8 (upstream's max_step)
PAPER = E2E.train  # the paper's training recipe (gpt2_lora/recipes.py)
# name -> (precision, compile mode or None, padding, token budget?)
OURS = {
    "ours fp32 padded to seq_len (upstream-like)": ("fp32", None, "padded", False),
    "ours fp32": ("fp32", None, "dynamic", False),
    "ours bf16": ("bf16", None, "dynamic", False),
    "ours bf16+compile": ("bf16", "default", "dynamic", False),
    "ours bf16+compile+cudagraphs": ("bf16", "reduce-overhead", "dynamic", False),
    "ours fp32 CUDA graph": ("fp32", "graph", "dynamic", False),
    "ours bf16 CUDA graph": ("bf16", "graph", "dynamic", False),
    "ours bf16+compile token-budget": ("bf16", "default", "dynamic", True),
    "ours bf16+compile packed": ("bf16", "default", "packed", True),
    "ours bf16+compile packed varlen-attention": ("bf16", "default", "packed", True),
    "ours bf16+compile packed bf16-residual": ("bf16", "default", "packed", True),
    "ours bf16+compile packed bf16-residual varlen-attention": ("bf16", "default", "packed", True),
}
# LossModel options of some configurations: the variable-length flash kernel instead of the dense
# block-diagonal mask (--packed_attention varlen), and the bf16 residual stream (--residual bf16)
LOSS_OPTIONS = {"ours bf16+compile packed varlen-attention": dict(varlen=True),
                "ours bf16+compile packed bf16-residual": dict(residual="bf16"),
                "ours bf16+compile packed bf16-residual varlen-attention": dict(residual="bf16", varlen=True)}
HF = {"HF+PEFT fp32": "fp32", "HF+PEFT bf16 autocast": "bf16"}
PEAKS = {"H100": (989e12, 67e12), "H200": (989e12, 67e12), "A100": (312e12, 19.5e12)}  # dense bf16, fp32


def e2e_like(n: int, rng: np.random.Generator, vocab: int) -> list[tuple[list[int], list[int]]]:
    lc = np.clip(np.rint(rng.normal(28.5, 6.7, n)), 13, 44).astype(int)
    lp = np.clip(np.rint(rng.normal(24.8, 7.9, n)), 2, 77).astype(int)
    eos = vocab - 1
    return [(rng.integers(0, eos, c - 1).tolist() + [eos], rng.integers(0, eos, p - 1).tolist() + [eos])
            for c, p in zip(lc, lp)]


def make_batches(examples, args, budget: bool, padded: bool, cudagraphs: bool, packed: bool = False):
    layout = Layout(examples, args.seq_len)
    if packed:  # as gpt2_lora.train --batching packed
        shape = packed_shape(layout.n, args.max_tokens, args.seq_len, dynamic_entries=True)  # compiled
        rows = pack_rows(np.random.default_rng(1).permutation(len(examples)).tolist(), layout.n, shape.pack_len)
        return [collate_packed(layout, rows[i:i + shape.rows], *shape) for i in range(0, len(rows), shape.rows)]
    pad_multiple, select_multiple = (32, 64) if cudagraphs else (8, 8)  # as gpt2_lora.train does
    if budget:
        order = sorted(range(len(examples)), key=lambda i: layout.n[i])
        groups = token_budget_batches(order, layout.n, args.max_tokens, pad_multiple)
        rng = np.random.default_rng(1)
        groups = [groups[i] for i in rng.permutation(len(groups))]
    else:
        groups = [list(range(i, i + args.batch)) for i in range(0, len(examples) - args.batch + 1, args.batch)]
    batches = [collate(layout, g, args.seq_len if padded else None, pad_multiple, select_multiple) for g in groups]
    return batches[: max(args.steps, 1) + 8] if not budget else batches


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


def run_ours(name, examples, config, args, device):
    precision, compile_mode, padding, budget = OURS[name]
    if LOSS_OPTIONS.get(name, {}).get("varlen") and device.type != "cuda":
        raise RuntimeError("the variable-length flash kernel needs a GPU")
    graphed = compile_mode == "graph"  # gpt2_lora.cudagraph: the whole step as one CUDA graph per shape
    batches = make_batches(examples, args, budget, padding == "padded", compile_mode in ("reduce-overhead", "graph"),
                           padding == "packed")
    if device.type == "cuda":
        batches = [b.pin_memory() for b in batches]
    torch.manual_seed(0)
    with torch.device(device):
        model = GPT2LMModel(config)
    lora.mark_only_lora_as_trainable(model)
    store_frozen_weights(model, precision)
    loss_model = LossModel(model, label_smooth=PAPER.label_smooth, precision=precision,
                           **LOSS_OPTIONS.get(name, {})).train()
    fn = loss_model if compile_mode in (None, "graph") else torch.compile(
        loss_model, mode=None if compile_mode == "default" else compile_mode,
        dynamic=None if padding == "packed" else True)  # packed: static but for K (dynamic_entries below)
    optimizer = AdamW(grouped_parameters(model, False), lr=PAPER.lr, betas=(0.9, PAPER.adam_beta2), eps=1e-6,
                      weight_decay=PAPER.weight_decay, correct_bias=PAPER.correct_bias)
    schedule = Schedule(PAPER.scheduler, PAPER.lr, PAPER.warmup_step, E2E_STEPS)
    if graphed:
        if device.type != "cuda":
            raise RuntimeError("CUDA graphs need a GPU")
        stepper = GraphedStepper(fn, optimizer, schedule, device, precision, E2E_STEPS)
    else:
        stepper = Stepper(fn, optimizer, schedule, device, precision, cudagraphs=compile_mode == "reduce-overhead",
                          dynamic_entries=padding == "packed" and compile_mode is not None)
    count = [0]

    def step(batch):
        stepper.micro_step(batch.to(device), update=True)
        stepper.optimizer_step(count[0])
        count[0] += 1

    seconds, timed = time_steps(step, batches, device, args.steps, args.warmup)
    loss = stepper.read_loss() / max(count[0], 1)
    return seconds, timed, loss


def run_hf(name, examples, config, args, device):
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config as HFConfig, GPT2LMHeadModel

    precision = HF[name]
    batches = make_batches(examples, args, False, False, False)
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny model, CPU, few steps: a smoke test")
    p.add_argument("--model_card", default="gpt2.md")
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

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.quick else "cpu"))
    if args.quick:
        config = GPT2Config(vocab_size=1024, n_positions=128, n_ctx=128, n_embd=64, n_layer=2, n_head=2,
                            lora_attn_dim=args.lora_dim, lora_attn_alpha=PAPER.lora_alpha, lora_dropout=PAPER.lora_dropout)
        args.steps, args.warmup, args.seq_len, args.max_tokens = 3, 1, 128, 512
        args.examples = min(args.examples, 128)
        default = ["ours fp32 padded to seq_len (upstream-like)", "ours fp32", "ours bf16", "HF+PEFT fp32"]  # compile: --configs
    else:
        config = GPT2Config.resolve(args.model_card, lora_attn_dim=args.lora_dim, lora_attn_alpha=PAPER.lora_alpha,
                                    lora_dropout=PAPER.lora_dropout)
        default = [*OURS, *HF] if device.type == "cuda" else ["ours fp32", "ours bf16", "HF+PEFT fp32"]
    names = [n.strip() for n in args.configs.split(",")] if args.configs else default
    unknown = [n for n in names if n not in OURS and n not in HF]
    if unknown:
        p.error(f"unknown config(s): {', '.join(unknown)}")
    if args.data:
        examples = read_encoded(args.data)[: args.examples]
    else:
        examples = e2e_like(args.examples, np.random.default_rng(0), config.vocab_size)
    lengths = np.array([min(len(c) + len(q), args.seq_len) for c, q in examples])
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'} | torch {torch.__version__} | "
          f"model {config.n_layer}x{config.n_embd} r={args.lora_dim} | {len(examples)} examples, mean length "
          f"{lengths.mean():.1f} tokens | batch {args.batch} | {args.steps} timed steps", file=sys.stderr)

    results = []
    for name in names:
        precision = OURS[name][0] if name in OURS else HF[name]
        row = {"config": name, "precision": precision}
        try:
            if name in OURS and OURS[name][1] == "reduce-overhead" and device.type != "cuda":
                raise RuntimeError("CUDA graphs need a GPU")
            runner = run_ours if name in OURS else run_hf
            started = time.perf_counter()
            seconds, timed, loss = runner(name, examples, config, args, device)
            wall = time.perf_counter() - started  # building, compiling, warming up and timing
            tokens = sum(int(b.n_tokens) for b in timed)
            padded = sum(b.input_ids.numel() for b in timed)
            flops = sum(useful_flops(b, config, True) for b in timed)
            peak = peak_flops(device, precision, args.peak_tflops)
            row.update(status="ok", ms_per_step=1000 * seconds, wall_s=wall, tokens_per_s=tokens / (seconds * len(timed)),
                       examples_per_step=sum(len(b.examples) for b in timed) / len(timed),
                       padded_fraction=1 - tokens / padded, mean_loss=loss,
                       mfu=(flops / (seconds * len(timed)) / peak) if peak else None,
                       tflops=flops / (seconds * len(timed)) / 1e12,
                       e2e_minutes=(seconds * E2E_STEPS / 60) if not OURS.get(name, (0, 0, 0, False))[3]
                       else (seconds * math.ceil(42061 * 5 * lengths.mean() / (tokens / len(timed))) / 60))
        except ImportError as err:
            row.update(status=f"skipped: {err.name or err} not installed")
        except Exception as err:  # noqa: BLE001 - one failing configuration must not hide the others
            row.update(status=f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
            if os.environ.get("BENCH_TRACEBACK"):
                traceback.print_exc()
        results.append(row)
        print(f"  {name}: {row.get('status')}" + (f", {row['ms_per_step']:.2f} ms/step" if "ms_per_step" in row else ""),
              file=sys.stderr)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        torch._dynamo.reset()

    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "model": f"{config.n_layer}x{config.n_embd}", "lora_dim": args.lora_dim,
            "batch": args.batch, "mean_length": float(lengths.mean()), "steps": args.steps, "results": results}
    with atomic_write(args.json) as handle:
        handle.write(json.dumps(info, indent=2) + "\n")

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
    print(f"(written to {args.json}; '5 E2E epochs' = ms/step x {E2E_STEPS} steps, or for the token-budget and packed rows "
          f"the same tokens at its throughput; 'wall' = the whole configuration, compilation included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
