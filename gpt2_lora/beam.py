"""Batched beam search with the rules of microsoft/LoRA ``src/gpt2_beam.py`` (run with ``--batch_size 1``).

Per input, exactly as upstream: the context is left-truncated to ``seq_len - eval_len`` tokens; at each
step the next-token logits get the repetition penalty (generated tokens only), EOS is banned while fewer
than ``min_length`` tokens exist, n-grams of ``no_repeat_ngram_size`` that already occur in the generated
tokens are banned; then ``log(softmax)``, top-``beam`` over beam x vocab (step 0: beam 0 only). A candidate
ending in an EOS becomes a finished hypothesis scored ``sum_logprob / length ** length_penalty`` and its
beam dies; the single best finished hypothesis is kept (a strictly greater score replaces it); after
``eval_len`` steps the live beams are scored the same way. The output is that hypothesis, EOS included,
padded with 0 to ``eval_len`` tokens.

What is different is only how fast that happens:
* identical (truncated) contexts are searched once and fanned back out;
* many inputs x beams run at once; contexts are left-padded (mask + position ids) and prefilled once per
  input, not once per beam;
* the KV cache is preallocated and never reordered: the context is stored once per input, then at step s
  the K beams' tokens go to slots ``ctx + s*K + j``. A beam's ancestry (which slot holds its token of
  each step) goes into the attention mask instead — tree attention over the shared context;
* repetition penalty, n-gram bans and the EOS logic are tensor ops on the device; the host reads one
  small transfer per step (how many inputs finished and still search);
* an input stops once no live beam can still beat its best finished hypothesis. Scores only fall as
  tokens are added (log-probabilities are <= 0) and ``s / d`` grows with d for s <= 0, so no descendant
  of a live beam with sum s can score more than ``s / max(L ** lp)`` over the lengths L still reachable
  (``eval_len ** lp`` for lp >= 0, the next length for lp < 0). Stopping when that bound does not exceed
  the best score is exact: the output cannot change.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import lora
from .data import read_encoded
from .data import EOS_ID
from .devices import resolve_device
from .errors import UserError, cli
from .fileio import atomic_write, check_outputs
from .model import GPT2Config, GPT2LMModel, KVCache, attention_mask

NEG_INF = float("-inf")


@dataclass(frozen=True)
class BeamSettings:
    """The search options, with upstream gpt2_beam.py's names and defaults."""

    beam: int = 1
    eval_len: int = 256
    seq_len: int = 512
    min_length: int = 0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 4
    repetition_penalty: float = 1.0
    eos_token_id: tuple[int, ...] = (EOS_ID,)

    def check(self, config: GPT2Config) -> None:
        """A one-line UserError for settings this model cannot run."""
        if self.beam < 1:
            raise UserError(f"--beam must be >= 1, got {self.beam}")
        if self.beam > config.vocab_size:
            raise UserError(f"--beam {self.beam} exceeds the vocabulary size {config.vocab_size}")
        if self.eval_len < 1:
            raise UserError(f"--eval_len must be >= 1, got {self.eval_len}")
        if self.seq_len <= self.eval_len:
            raise UserError(f"--seq_len {self.seq_len} must exceed --eval_len {self.eval_len} "
                            f"(contexts keep seq_len - eval_len tokens)")
        if self.seq_len > config.n_positions:
            raise UserError(f"--seq_len {self.seq_len} exceeds the model's n_positions={config.n_positions}")
        if self.min_length < 0 or self.no_repeat_ngram_size < 0:
            raise UserError("--min_length and --no_repeat_ngram_size must be >= 0")
        if not (self.repetition_penalty > 0 and math.isfinite(self.repetition_penalty)):
            raise UserError(f"--repetition_penalty must be a finite number > 0, got {self.repetition_penalty}")
        if not math.isfinite(self.length_penalty):
            raise UserError(f"--length_penalty must be finite, got {self.length_penalty}")

    def eos_in_vocab(self, vocab_size: int) -> list[int]:
        """The EOS ids the model can emit. Others never match (as upstream, which only compares ids)."""
        return sorted({e for e in self.eos_token_id if 0 <= e < vocab_size})


# ------------------------------------------------------------------------------------------ score rules
def postprocess_scores(scores: torch.Tensor, history: torch.Tensor | None, step: int, settings: BeamSettings,
                       eos: torch.Tensor) -> torch.Tensor:
    """Upstream's ``_postprocess_next_token_scores``, in place, for rows (N, vocab) whose generated tokens
    are ``history`` (N, step), or None at step 0."""
    rp = settings.repetition_penalty
    if rp != 1.0 and history is not None:
        # each distinct generated token once: logits < 0 are multiplied, others divided
        seen = scores.gather(1, history)
        scores.scatter_(1, history, torch.where(seen < 0, seen * rp, seen / rp))
    if step < settings.min_length:
        scores[:, eos] = NEG_INF
    n = settings.no_repeat_ngram_size
    if n > 0 and history is not None and step >= n:
        grams = history.unfold(1, n, 1)                        # (N, step - n + 1, n)
        hit = (grams[:, :, :-1] == history[:, None, step - n + 1:]).all(-1)
        ban = torch.full(hit.shape, math.inf, dtype=scores.dtype, device=scores.device).masked_fill_(hit, NEG_INF)
        scores.scatter_reduce_(1, grams[:, :, -1], ban, "amin")  # order-free, unlike scatter_ with repeats
    return scores


def length_factor_bound(step: int, eval_len: int, length_penalty: float) -> float:
    """The largest ``L ** length_penalty`` over the lengths L a beam alive after ``step`` can still end
    at (step + 2 .. eval_len): L ** lp is monotone in L, so one of the two ends."""
    return max(float((step + 2) ** length_penalty), float(eval_len ** length_penalty))


def _log_probs(scores: torch.Tensor) -> torch.Tensor:
    # upstream takes log(softmax(x)), not log_softmax(x); the two can differ in the last bit
    return F.softmax(scores, dim=-1).log_()


# ------------------------------------------------------------------------------------------- the search
class TreeCache(KVCache):
    """The model's KV cache, laid out by the search as: context (once per input), then K slots per step.
    Nothing is ever reordered; finished inputs are dropped in place (``keep_rows``)."""

    def keep_rows(self, index: torch.Tensor) -> None:
        """Move rows ``index`` (ascending) to the front, one layer at a time: no second cache in memory."""
        n = len(index)
        for buf in (self.k, self.v):
            for layer in range(buf.size(0)):
                buf[layer, :n, :, :self.length] = buf[layer, index, :, :self.length]
        self.k, self.v = self.k[:, :n], self.v[:, :n]
        self.batch_size, self.shape = n, tuple(self.k.shape)


@torch.inference_mode()
def _search(model: GPT2LMModel, contexts: Sequence[Sequence[int]], settings: BeamSettings,
            on_finished: Callable[[int], None] = lambda n: None, early_stop: bool = True,
            stats: dict | None = None) -> torch.Tensor:
    """Beam search for a batch of (already truncated) contexts; (B, eval_len) best sequences on the CPU.

    ``early_stop=False`` runs every input for all ``eval_len`` steps (tests prove it changes nothing);
    ``stats`` accumulates ``steps`` (forward passes), ``input_steps`` (inputs x steps searched) and
    ``compactions`` (times finished inputs were dropped from the batch).
    """
    device = model.transformer.wte.weight.device
    V = model.config.vocab_size
    B, K, E = len(contexts), settings.beam, settings.eval_len
    lp = settings.length_penalty
    eos = torch.tensor(settings.eos_in_vocab(V), dtype=torch.long, device=device)

    lengths = torch.tensor([len(c) for c in contexts], device=device)
    L = max(len(c) for c in contexts)
    ids = torch.zeros(B, L, dtype=torch.long)
    for b, c in enumerate(contexts):
        ids[b, L - len(c):] = torch.as_tensor(c, dtype=torch.long)
    ids = ids.to(device)
    pad = L - lengths
    keep = torch.arange(L, device=device)[None] >= pad[:, None]        # (B, L) real context tokens
    cache = TreeCache(model.config, B, L + (E - 1) * K, model.transformer.wte.weight.dtype, device)
    positions = (torch.arange(L, device=device)[None] - pad[:, None]).clamp(min=0)
    hidden = model.hidden_states(ids, positions, cache, attention_mask(keep, L))
    logits = model.logits(hidden[:, -1]).float()                        # (B, V): step 0 is beam 0 only

    beams = torch.arange(K, device=device)
    beam_scores = torch.zeros(B, K, device=device)
    history = torch.zeros(B, K, E, dtype=torch.long, device=device)    # generated tokens, 0 beyond
    slot_of = torch.zeros(B, K, E, dtype=torch.long, device=device)    # beam j's token s is in column slot_of[j, s]
    best_score = torch.full((B,), NEG_INF, device=device)
    has_best = torch.zeros(B, dtype=torch.bool, device=device)
    best_seq = torch.zeros(B, E, dtype=torch.long, device=device)
    searching = torch.ones(B, dtype=torch.bool, device=device)
    rows = torch.arange(B, device=device)                               # original row of each current row
    out = torch.zeros(B, E, dtype=torch.long, device=device)

    def keep_best(candidate, scores):
        # upstream's _add_beam_candidate: candidates in beam order, a strictly greater score replaces
        nonlocal best_score, has_best, best_seq
        key = scores.masked_fill(~candidate, NEG_INF)
        top = key.max(1).values
        first = (candidate & (key == top[:, None])).int().argmax(1)
        any_cand = candidate.any(1)
        replace = any_cand & (~has_best | (best_score < top))
        best_score = torch.where(replace, top, best_score)
        has_best = has_best | any_cand
        chosen = history[torch.arange(len(first), device=device), first]
        best_seq = torch.where(replace[:, None], chosen, best_seq)

    stats = {} if stats is None else stats
    for step in range(E):
        stats["steps"] = stats.get("steps", 0) + 1
        stats["input_steps"] = stats.get("input_steps", 0) + len(rows)
        if step == 0:
            postprocess_scores(logits, None, 0, settings, eos)
            candidates = _log_probs(logits)                                      # (B, V)
        else:
            slot_of[:, :, step - 1] = beams                 # this step's tokens go to column j of beam j
            tree = (slot_of[:, :, :step, None] == beams).flatten(2)              # (B, K, step*K)
            mask = torch.cat((keep[:, None, :].expand(-1, K, -1), tree), dim=2)[:, None]
            hidden = model.hidden_states(history[:, :, step - 1], (lengths + step - 1)[:, None].expand(-1, K),
                                         cache, mask)
            logits = model.logits(hidden).float().view(-1, V)
            postprocess_scores(logits, history[:, :, :step].reshape(-1, step), step, settings, eos)
            candidates = _log_probs(logits).view(B, K, V).add_(beam_scores[:, :, None]).view(B, K * V)
        top_scores, top_index = candidates.topk(K, dim=1, largest=True, sorted=True)
        parent, token = top_index // V, top_index % V
        history = history.gather(1, parent[:, :, None].expand(-1, -1, E))
        history[:, :, step] = token
        slot_of = slot_of.gather(1, parent[:, :, None].expand(-1, -1, E))

        ended = torch.isin(token, eos)
        keep_best(ended & searching[:, None], top_scores / float((step + 1) ** lp))
        beam_scores = top_scores.masked_fill(ended, NEG_INF)
        if step == E - 1:
            keep_best(searching[:, None].expand(-1, K), beam_scores / float(E ** lp))
            break

        # exact early stop: every reachable score of a live beam is <= its sum / the largest length factor
        factor = length_factor_bound(step, E, lp)
        can_improve = ((beam_scores / factor) > best_score[:, None]).any(1)
        newly_done = searching & has_best & ~can_improve & early_stop
        searching = searching & ~newly_done
        n_done, n_searching = torch.stack((newly_done.sum(), searching.sum())).tolist()  # the one host sync
        if n_done:
            on_finished(n_done)
        if n_searching == 0:
            break
        if n_searching <= 0.75 * len(rows):  # drop finished inputs so later steps do less work
            out[rows[~searching]] = best_seq[~searching]
            idx = searching.nonzero().squeeze(1)
            cache.keep_rows(idx)
            stats["compactions"] = stats.get("compactions", 0) + 1
            (lengths, keep, beam_scores, history, slot_of, best_score, has_best, best_seq, searching, rows) = (
                t[idx] for t in (lengths, keep, beam_scores, history, slot_of, best_score, has_best, best_seq,
                                 searching, rows))
            B = len(idx)
    on_finished(int(searching.sum()))
    out[rows] = best_seq
    return out.cpu()


def _bytes_per_input(config: GPT2Config, settings: BeamSettings, ctx_len: int, elem: int) -> int:
    """Rough device memory one input needs during the search (cache, logits, prefill activations)."""
    K, E, C = settings.beam, settings.eval_len, config.n_embd
    cache = 2 * config.n_layer * C * elem * (ctx_len + (E - 1) * K)
    logits = 4 * K * config.vocab_size * 4
    prefill = ctx_len * 8 * C * elem + config.n_head * ctx_len * ctx_len * 4
    return cache + logits + prefill + K * 8 * C * 4


def _memory_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.6 * (free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)))
    return 1 << 30  # CPU: keep batches modest; speed there comes from de-duplication and early stops


def generate(model: GPT2LMModel, contexts: Sequence[Sequence[int]], settings: BeamSettings,
             max_batch_inputs: int = 0, progress: bool = True, early_stop: bool = True,
             stats: dict | None = None) -> list[list[int]]:
    """The upstream-equal beam output (``eval_len`` ids, EOS included, 0-padded) for each context.

    ``max_batch_inputs`` caps the distinct inputs searched together (0: as many as fit in memory);
    it changes speed only, never the output. ``stats`` (a dict) receives ``lines``, ``unique``,
    ``batches``, ``steps``, ``input_steps`` and ``compactions``.
    """
    settings.check(model.config)
    keep = settings.seq_len - settings.eval_len
    truncated = [tuple(c[-keep:]) for c in contexts]
    V = model.config.vocab_size
    for i, c in enumerate(truncated):
        if not c:
            raise UserError(f"input {i}: empty context")
        if min(c) < 0 or max(c) >= V:
            raise UserError(f"input {i}: token id {max(c) if max(c) >= V else min(c)} is outside the "
                            f"vocabulary [0, {V})")
    unique = list(dict.fromkeys(truncated))
    unique.sort(key=len, reverse=True)  # similar lengths together: little padding, largest batch first
    stats = {} if stats is None else stats
    stats.update(lines=len(truncated), unique=len(unique), batches=0)
    weight = model.transformer.wte.weight
    budget = _memory_budget(weight.device)
    found: dict[tuple[int, ...], list[int]] = {}
    with tqdm(total=len(unique), desc="beam search", unit="input", disable=None if progress else True,
              file=sys.stderr) as bar:
        start = 0
        while start < len(unique):
            per_input = _bytes_per_input(model.config, settings, len(unique[start]), weight.element_size())
            n = max(1, budget // per_input)
            if max_batch_inputs > 0:
                n = min(n, max_batch_inputs)
            chunk = unique[start:start + n]
            stats["batches"] += 1
            for ctx, seq in zip(chunk, _search(model, chunk, settings, bar.update, early_stop, stats).tolist()):
                found[ctx] = seq
            start += n
    return [found[c] for c in truncated]


# ------------------------------------------------------------------------------------------------- CLI
def read_contexts(path: str, vocab_size: int | None = None) -> list[list[int]]:
    """The ``context`` ids of each line of an encoded jsonl file (upstream FT_Dataset's input)."""
    return [context for context, _ in read_encoded(path, "--data file", vocab_size)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gpt2_lora.beam", description="GPT-2 (LoRA) beam decoding, "
                                "same output as microsoft/LoRA src/gpt2_beam.py --batch_size 1, much faster.")
    # upstream gpu.py flags: accepted; decoding runs in one process (rank 0)
    p.add_argument("--platform", default="k8s", type=str, help="accepted for compatibility")
    p.add_argument("--local_rank", "--local-rank", default=0, type=int, help="accepted for compatibility")
    p.add_argument("--rank", default=0, type=int, help="accepted for compatibility")
    p.add_argument("--world_size", default=0, type=int, help="accepted for compatibility")
    p.add_argument("--random_seed", default=10, type=int, help="seed (random weights when no checkpoint)")
    p.add_argument("--device", default=None, type=str,
                   help="cuda, cuda:N, N (a GPU index, as upstream) or cpu; default: cuda if present")
    # upstream gpt2_beam.py flags
    p.add_argument("--data", type=str, default="../data/wikitext-103", help="encoded jsonl to decode")
    p.add_argument("--batch_size", type=int, default=10,
                   help="accepted for compatibility: outputs never depend on batching, which is automatic "
                        "(see --max_batch_inputs)")
    p.add_argument("--seq_len", type=int, default=512, help="context keeps seq_len - eval_len tokens")
    p.add_argument("--eval_len", type=int, default=256, help="tokens to generate")
    p.add_argument("--min_length", type=int, default=0, help="minimum generation length")
    p.add_argument("--model_card", default="gpt2.sm", help="gpt2.sm | gpt2.md | gpt2.lg | path to config.json")
    p.add_argument("--init_checkpoint", default=None, type=str, help="checkpoint (full, or LoRA-only with "
                   "--base_checkpoint)")
    p.add_argument("--lora_dim", type=int, default=0, help="lora attn dimension")
    p.add_argument("--lora_alpha", type=int, default=128, help="lora attn alpha")
    p.add_argument("--work_dir", type=str, default=os.getenv("PT_OUTPUT_DIR", "gpt2_model"), help="output folder")
    p.add_argument("--beam", type=int, default=1, help="beam search size")
    p.add_argument("--length_penalty", type=float, default=1.0, help="length penalty")
    p.add_argument("--no_repeat_ngram_size", type=int, default=4, help="no_repeat_ngram_size")
    p.add_argument("--repetition_penalty", type=float, default=1.0, help="repetition_penalty")
    p.add_argument("--eos_token_id", action="append", type=int, default=[EOS_ID],
                   help="an extra EOS id (repeatable; 50256 is always one)")
    p.add_argument("--output_file", type=str, default="beam_prediction.jsonl", help="name inside --work_dir")
    # ours
    p.add_argument("--base_checkpoint", default=None, type=str,
                   help="pretrained GPT-2 loaded before --init_checkpoint (for LoRA-only checkpoints)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="fp32: the parity path (default); bf16: faster, may change some tokens")
    p.add_argument("--max_batch_inputs", type=int, default=0,
                   help="most distinct inputs searched together (0: as many as fit in memory)")
    return p


def load_model(args: argparse.Namespace, config: GPT2Config, device: torch.device,
               dtype: torch.dtype) -> GPT2LMModel:
    from .checkpoint import load_into

    model = GPT2LMModel(config)
    paths = [p for p in (args.base_checkpoint, args.init_checkpoint) if p]
    if paths:
        report = load_into(model, *paths)
        print(f"loaded {' + '.join(paths)} ({report.kind})", file=sys.stderr)
    else:
        print("warning: no --init_checkpoint; decoding with random weights", file=sys.stderr)
    lora.merge(model)  # W + BA once, so decoding runs plain matmuls
    return model.eval().to(device=device, dtype=dtype)


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if int(os.environ.get("RANK", args.rank) or 0) != 0:
        print("decoding runs on rank 0 only; nothing to do here", file=sys.stderr)
        return 0
    torch.manual_seed(args.random_seed)
    device = resolve_device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    if device.type == "cuda" and dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = False  # the parity path keeps full fp32 matmuls
    settings = BeamSettings(beam=args.beam, eval_len=args.eval_len, seq_len=args.seq_len,
                            min_length=args.min_length, length_penalty=args.length_penalty,
                            no_repeat_ngram_size=args.no_repeat_ngram_size,
                            repetition_penalty=args.repetition_penalty, eos_token_id=tuple(args.eos_token_id))
    config = GPT2Config.resolve(args.model_card, lora_attn_dim=args.lora_dim, lora_attn_alpha=args.lora_alpha)
    settings.check(config)
    if args.max_batch_inputs < 0:
        raise UserError(f"--max_batch_inputs must be >= 0 (0: as many as fit), got {args.max_batch_inputs}")
    path = os.path.join(args.work_dir, args.output_file)
    check_outputs({"--work_dir/--output_file": path}, {"--data": args.data, "--init_checkpoint": args.init_checkpoint,
                                                       "--base_checkpoint": args.base_checkpoint})
    contexts = read_contexts(args.data, config.vocab_size)
    model = load_model(args, config, device, dtype)
    outside = sorted(set(settings.eos_token_id) - set(settings.eos_in_vocab(model.config.vocab_size)))
    if outside:
        print(f"note: --eos_token_id {outside} outside the vocabulary can never be generated", file=sys.stderr)
    print(f"decoding {len(contexts)} lines on {device} ({args.precision}), beam {settings.beam}, "
          f"eval_len {settings.eval_len}, eos {list(settings.eos_token_id)}", file=sys.stderr)
    start = time.perf_counter()
    predictions = generate(model, contexts, settings, max_batch_inputs=args.max_batch_inputs)
    seconds = time.perf_counter() - start
    # one line per input line in id order (upstream writes its sampler's shuffled order; readers use ids)
    with atomic_write(path) as handle:
        for i, predict in enumerate(predictions):
            handle.write(json.dumps({"id": i, "predict": predict}) + "\n")
    print(f"wrote {len(predictions)} predictions to {path} in {seconds:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
