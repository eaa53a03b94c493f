#!/usr/bin/env python
"""Beam-search speed: gpt2_lora.beam (fp32 and bf16) against HF transformers ``generate``, same run.

Default: GPT-2 M with random weights (so no early EOS: every input runs all 64 steps), beam 10,
eval_len 64, length penalty 0.8, no_repeat_ngram_size 4, on the E2E test set's 4,693 contexts
(``--data test.jsonl``, the encoded file; without it, 4,693 synthetic contexts with 630 distinct ones of
E2E-like lengths). HF ``generate`` (num_beams=10, left-padded batches of 64, fp32) is timed on the first
``--hf_lines`` lines and extrapolated per line. Both models hold the same weights.

    python scripts/benchmark_beam.py --data data/e2e/test.jsonl --out bench_beam.json
    python scripts/benchmark_beam.py --quick        # tiny model on the CPU, a few seconds
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpt2_lora.beam import BeamSettings, generate, read_contexts  # noqa: E402
from gpt2_lora.recipes import E2E  # noqa: E402

PAPER = E2E.headline  # the paper's decoding settings (gpt2_lora/recipes.py)
from gpt2_lora.data import EOS_ID as EOS  # noqa: E402
from gpt2_lora.model import GPT2Config, GPT2LMModel  # noqa: E402
from gpt2_lora.beam import TreeCache  # noqa: E402
from kernel_profile import kernel_profile  # noqa: E402  (scripts/)

# --attention: how the search's K queries per input attend to its cache. "ours" is TreeCache.attend; the
# others are torch's SDPA with its own choice of kernel, or with only one kernel allowed (for comparison).
ATTENTION = {"ours": None, "sdpa": (), "efficient": ("EFFICIENT_ATTENTION",), "math": ("MATH",)}


def synthetic_contexts(lines: int = 4693, unique: int = 630, seed: int = 0) -> list[list[int]]:
    """E2E test look-alike: 630 distinct contexts, 14-47 tokens (mean 36) ending in EOS, each repeated."""
    rng = random.Random(seed)
    distinct = []
    for _ in range(unique):
        n = min(47, max(14, round(rng.gauss(36.4, 7.1))))
        distinct.append([rng.randrange(100, 50000) for _ in range(n - 1)] + [EOS])
    out = [distinct[i % unique] for i in range(lines)]
    rng.shuffle(out)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def decode_attention(name: str):
    """TreeCache.attend replaced by torch's SDPA (``ATTENTION[name]``: allowed kernels, () = torch's choice)."""
    if ATTENTION[name] is None:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backends = [getattr(SDPBackend, b) for b in ATTENTION[name]]

    def attend(q, k, v, attn_mask, is_causal=False):
        with sdpa_kernel(backends) if backends else contextlib.nullcontext():
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)

    ours = TreeCache.__dict__["attend"]
    TreeCache.attend = staticmethod(attend)
    try:
        yield
    finally:
        TreeCache.attend = ours


def time_ours(model, contexts, settings, device, max_batch_inputs, profile: bool = False) -> dict:
    generate(model, contexts[:8], settings, progress=False)           # warm-up (kernels, allocator)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stats: dict = {}
    start = time.perf_counter()
    outputs = generate(model, contexts, settings, max_batch_inputs=max_batch_inputs, stats=stats)
    _sync(device)
    seconds = time.perf_counter() - start
    result = dict(stats, seconds=seconds, ms_per_line=1000 * seconds / len(contexts))
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        if profile:  # one more search, under the profiler
            work = lambda: generate(model, contexts, settings, max_batch_inputs=max_batch_inputs, progress=False)  # noqa: E731
            result["profile"] = kernel_profile(work, device, 1, "search")
    return result | {"outputs": outputs}


def time_hf(hf_model, contexts, settings, device, batch: int) -> dict:
    """HF generate over ``contexts`` in left-padded batches, timed after one warm-up batch."""

    def run(chunk):
        width = max(len(c) for c in chunk)
        ids = torch.full((len(chunk), width), EOS, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, c in enumerate(chunk):
            ids[i, width - len(c):] = torch.tensor(c)
            mask[i, width - len(c):] = 1
        hf_model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), num_beams=settings.beam,
                          max_new_tokens=settings.eval_len, no_repeat_ngram_size=settings.no_repeat_ngram_size,
                          length_penalty=settings.length_penalty, do_sample=False, pad_token_id=EOS,
                          eos_token_id=EOS)

    with torch.inference_mode():
        run(contexts[:min(batch, 4)])
        _sync(device)
        start = time.perf_counter()
        for i in range(0, len(contexts), batch):
            run(contexts[i:i + batch])
        _sync(device)
    seconds = time.perf_counter() - start
    return dict(seconds_measured=seconds, lines_measured=len(contexts), ms_per_line=1000 * seconds / len(contexts))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="encoded E2E test.jsonl (default: synthetic contexts)")
    p.add_argument("--model_card", default="gpt2.md", help="card or HF config.json (random weights)")
    p.add_argument("--beam", type=int, default=PAPER.beam)
    p.add_argument("--eval_len", type=int, default=PAPER.eval_len)
    p.add_argument("--seq_len", type=int, default=PAPER.seq_len)
    p.add_argument("--length_penalty", type=float, default=PAPER.length_penalty)
    p.add_argument("--no_repeat_ngram_size", type=int, default=PAPER.no_repeat_ngram_size)
    p.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16")
    p.add_argument("--max_batch_inputs", type=int, default=0, help="0: as many as fit")
    p.add_argument("--attention", choices=ATTENTION, default="ours",
                   help="how the search attends to its cache: ours (TreeCache.attend), or torch's SDPA with its "
                        "own kernel choice (sdpa) or only one kernel (efficient, math), to compare")
    p.add_argument("--profile", action="store_true", help="GPU: one more search per precision under the profiler "
                   "(kernels, their time, the top kernels) into the JSON")
    p.add_argument("--hf_lines", type=int, default=256, help="lines HF generate is timed on (0: skip HF)")
    p.add_argument("--hf_batch", type=int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmark_beam.json", help="JSON results")
    p.add_argument("--quick", action="store_true", help="tiny model, few lines, CPU: checks the script runs")
    return p


def workload(args: argparse.Namespace) -> tuple[torch.device, GPT2Config, list[list[int]], BeamSettings]:
    """Device, model config, contexts and settings; ``--quick`` shrinks all of them (and args)."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.quick:
        device = torch.device(args.device or "cpu")
        config = GPT2Config(n_embd=64, n_layer=2, n_head=4)
        contexts = synthetic_contexts(lines=40, unique=10, seed=args.seed)
        args.beam, args.eval_len, args.hf_lines, args.hf_batch = 3, 8, min(args.hf_lines, 8), 4
    else:
        config = GPT2Config.resolve(args.model_card)
        contexts = read_contexts(args.data) if args.data else synthetic_contexts(seed=args.seed)
    settings = BeamSettings(beam=args.beam, eval_len=args.eval_len, seq_len=args.seq_len,
                            length_penalty=args.length_penalty, no_repeat_ngram_size=args.no_repeat_ngram_size)
    return device, config, contexts, settings


def same_random_models(config: GPT2Config, device: torch.device):
    """(ours, HF's) GPT-2 with the same random weights, in eval mode on ``device``."""
    from transformers import GPT2Config as HFConfig, GPT2LMHeadModel

    hf_model = GPT2LMHeadModel(HFConfig(vocab_size=config.vocab_size, n_positions=config.n_positions,
                                        n_embd=config.n_embd, n_layer=config.n_layer, n_head=config.n_head))
    model = GPT2LMModel(config)
    model.load_weight(hf_model.state_dict())
    return model.eval().to(device), hf_model.eval().to(device)


def time_precisions(model, contexts, settings, device, args, results: dict) -> list[tuple]:
    """Ours in each of ``--precisions`` (results ``ours_<precision>``) and how often bf16 gives fp32's
    tokens; the table rows (name, seconds, ms/line, speed-up)."""
    rows, outputs = [], {}
    for precision in [x for x in args.precisions.split(",") if x]:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
        net = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
        with decode_attention(args.attention):
            r = time_ours(net, contexts, settings, device, args.max_batch_inputs, args.profile)
        outputs[precision] = r.pop("outputs")
        results[f"ours_{precision}"] = r
        rows.append((f"gpt2_lora.beam {precision}", r["seconds"], r["ms_per_line"], ""))
        del net
    if "fp32" in outputs and "bf16" in outputs:
        same = sum(a == b for a, b in zip(outputs["fp32"], outputs["bf16"]))
        results["bf16_lines_equal_to_fp32"] = same / len(contexts)
    return rows


def time_hf_baseline(hf_model, contexts, settings, device, args, results: dict, rows: list[tuple]) -> list[tuple]:
    """HF generate on the first ``--hf_lines`` lines, extrapolated; the rows with HF first and speed-ups."""
    import transformers

    hf = time_hf(hf_model, contexts[:args.hf_lines], settings, device, args.hf_batch)
    hf["seconds_extrapolated"] = hf["ms_per_line"] * len(contexts) / 1000
    results["hf_generate_fp32"] = hf | {"transformers": transformers.__version__, "batch": args.hf_batch}
    rows = [(f"HF generate fp32 (x{len(contexts)}/{args.hf_lines})", hf["seconds_extrapolated"],
             hf["ms_per_line"], ""), *rows]
    for key in [k for k in results if k.startswith("ours_")]:
        results[key]["speedup_vs_hf"] = hf["seconds_extrapolated"] / results[key]["seconds"]
    return [(name, s, ms, f"{rows[0][1] / s:.1f}x") for name, s, ms, _ in rows]


def print_table(results: dict, rows: list[tuple], n_lines: int, settings: BeamSettings, out: str) -> None:
    print(f"\n{n_lines} lines ({results.get('ours_fp32', results.get('ours_bf16', {})).get('unique', '?')} "
          f"distinct), beam {settings.beam}, eval_len {settings.eval_len}, {results['device']}")
    print(f"{'method':<40} {'seconds':>9} {'ms/line':>9} {'speed-up':>9}")
    for name, seconds, ms, speedup in rows:
        print(f"{name:<40} {seconds:>9.2f} {ms:>9.2f} {speedup:>9}")
    if "bf16_lines_equal_to_fp32" in results:
        print(f"bf16 output equal to fp32 on {100 * results['bf16_lines_equal_to_fp32']:.1f}% of lines")
    print(f"results: {out}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 for both sides
    torch.manual_seed(args.seed)
    device, config, contexts, settings = workload(args)
    if args.attention == "efficient" and device.type != "cuda":
        raise SystemExit("benchmark_beam.py: --attention efficient needs a CUDA device (the kernel is CUDA-only)")
    model, hf_model = same_random_models(config, device)
    results: dict = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
                         or "cpu", torch=torch.__version__, model=f"n_embd={config.n_embd} n_layer={config.n_layer}",
                         data=args.data or "synthetic", attention=args.attention,
                         settings=settings.__dict__ | {"eos_token_id": [EOS]})
    rows = time_precisions(model, contexts, settings, device, args, results)
    if args.hf_lines > 0:
        rows = time_hf_baseline(hf_model, contexts, settings, device, args, results, rows)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, rows, len(contexts), settings, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
