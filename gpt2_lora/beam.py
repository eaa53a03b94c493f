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
* the top K of K*V candidates is a top K per beam over V and a sort of K*K (the same K: see
  ``_best_continuations``); attention over the cache is ``TreeCache.attend`` (batched matmuls in fp32, the
  memory-efficient kernel in 16 bits), not torch's default choice, whose cuDNN kernel builds a new plan for
  every key length; 16-bit models get an LM head padded to 50,304 rows (aligned GEMMs), their score
  rules applied to the 16-bit logits themselves and one fused ``log_softmax`` into fp32; fp32 models get
  upstream's ``log(softmax)``;
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
from dataclasses import dataclass, fields
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from .cli import Parser, add_device_flags, add_launcher_flags, add_model_flags, default_work_dir
from .data import read_encoded
from .data import EOS_ID
from .devices import resolve_device
from .errors import UserError, cli
from .recipes import E2E
from .fileio import atomic_write, check_outputs
from .model import GPT2Config, GPT2LMModel, KVCache, attention_mask, padded_head

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
    are ``history`` (N, step), or None at step 0.

    Both history rules change only tokens of the history (an n-gram ban's token ends an n-gram of it),
    so they are one write: each history position gets its token's penalised score, or -inf where it
    ends a banned n-gram; ``amin`` over positions of the same token keeps the ban whatever the order
    (every other position carries the same value). The EOS ban comes after, as upstream's does.
    """
    rp, n = settings.repetition_penalty, settings.no_repeat_ngram_size
    bans_ngrams = n > 0 and history is not None and step >= n
    if history is not None and (rp != 1.0 or bans_ngrams):
        new = scores.gather(1, history)                        # (N, step)
        if rp != 1.0:  # logits < 0 are multiplied, others divided (once per distinct token)
            new = torch.where(new < 0, new * rp, new / rp)
        if bans_ngrams:
            new[:, n - 1:].masked_fill_(_repeats_ngram(history, n), NEG_INF)
        scores.scatter_reduce_(1, history, new, "amin", include_self=False)
    if step < settings.min_length:
        scores.index_fill_(1, eos, NEG_INF)
    return scores


def _repeats_ngram(history: torch.Tensor, n: int) -> torch.Tensor:
    """(N, step - n + 1): whether the n-gram ending at history position ``n - 1 + p`` starts with the
    last n - 1 tokens, so that its last token would repeat it next."""
    grams = history.unfold(1, n, 1)                            # (N, step - n + 1, n), a view
    return (grams[:, :, :-1] == history[:, None, history.size(1) - n + 1:]).all(-1)


def length_factor_bound(step: int, eval_len: int, length_penalty: float) -> float:
    """The largest ``L ** length_penalty`` over the lengths L a beam alive after ``step`` can still end
    at (step + 2 .. eval_len): L ** lp is monotone in L, so one of the two ends."""
    return max(float((step + 2) ** length_penalty), float(eval_len ** length_penalty))


def _log_probs(scores: torch.Tensor) -> torch.Tensor:
    """fp32 logits: log(softmax(x)) as upstream takes it (log_softmax(x) can differ in the last bit).
    16-bit logits (not a parity path): one fused log_softmax that reads them and writes fp32."""
    if scores.dtype == torch.float32:
        return F.softmax(scores, dim=-1).log_()
    return torch.log_softmax(scores, dim=-1, dtype=torch.float32)


# ------------------------------------------------------------------------------------------- the search
class TreeCache(KVCache):
    """The model's KV cache, laid out by the search as: context (once per input), then K slots per step.
    Nothing is ever reordered; finished inputs are dropped in place (``keep_rows``)."""

    @staticmethod
    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor,
               is_causal: bool = False) -> torch.Tensor:
        """Attention of a few queries per input (K beams) over the cache's strided views, no copy.
        fp32 (the parity path): as upstream's model writes it, ``softmax(q @ kᵀ / sqrt(d), masked) @ v``
        in two batched matmuls. 16-bit: the memory-efficient fused kernel, whose softmax runs in fp32.
        Measured on the E2E test set (BENCHMARKS.md): in bf16 torch's default, cuDNN's kernel, builds a
        new plan for every key length (which grows each step), 5.69 s against 2.23 s; in fp32 the matmuls
        took the whole search from 10.84 to 9.44 s against torch's choice there, the same fused kernel."""
        if is_causal:
            raise ValueError("TreeCache.attend takes an explicit mask")
        if q.dtype != torch.float32:
            with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):  # math: the CPU's
                return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        scores = torch.matmul(q, k.transpose(-1, -2)).div_(math.sqrt(q.size(-1)))
        scores.masked_fill_(~attn_mask, NEG_INF)
        return torch.matmul(torch.softmax(scores, dim=-1), v)

    def keep_rows(self, index: torch.Tensor) -> None:
        """Move rows ``index`` (ascending) to the front, one layer at a time: no second cache in memory."""
        n = len(index)
        for buf in (self.k, self.v):
            for layer in range(buf.size(0)):
                buf[layer, :n, :, :self.length] = buf[layer, index, :, :self.length]
        self.k, self.v = self.k[:, :n], self.v[:, :n]
        self.batch_size, self.shape = n, tuple(self.k.shape)


@dataclass
class SearchState:
    """What the search knows of each input, one row per input still in the batch (B rows, K beams,
    E = eval_len). Every field is indexed by row first, so ``select`` drops inputs from all at once."""

    lengths: torch.Tensor      # (B,) context length
    keep: torch.Tensor         # (B, L) True at context tokens, False at left padding
    beam_scores: torch.Tensor  # (B, K) each beam's sum of log-probs; -inf once it ended in an EOS
    history: torch.Tensor      # (B, K, E) each beam's generated tokens, 0 beyond the current step
    slot_of: torch.Tensor      # (B, K, E) beam j's token of step s is in cache column L + s*K + slot_of[., j, s]
    best_score: torch.Tensor   # (B,) the best finished hypothesis' score (-inf: none yet)
    has_best: torch.Tensor     # (B,) whether there is one (a hypothesis may score -inf)
    best_seq: torch.Tensor     # (B, E) its tokens, EOS included, 0-padded
    searching: torch.Tensor    # (B,) False once the output cannot change any more
    rows: torch.Tensor         # (B,) the input (row of the first batch) each row holds

    @classmethod
    def start(cls, lengths: torch.Tensor, keep: torch.Tensor, beam: int, eval_len: int) -> SearchState:
        """Before step 0: no tokens, no hypotheses, every input searching."""
        B, device = len(lengths), lengths.device
        tokens = lambda: torch.zeros(B, beam, eval_len, dtype=torch.long, device=device)  # noqa: E731
        return cls(lengths=lengths, keep=keep, beam_scores=torch.zeros(B, beam, device=device),
                   history=tokens(), slot_of=tokens(), best_score=torch.full((B,), NEG_INF, device=device),
                   has_best=torch.zeros(B, dtype=torch.bool, device=device),
                   best_seq=torch.zeros(B, eval_len, dtype=torch.long, device=device),
                   searching=torch.ones(B, dtype=torch.bool, device=device), rows=torch.arange(B, device=device))

    def select(self, index: torch.Tensor) -> SearchState:
        """The state of rows ``index`` only, in that order."""
        return SearchState(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def _prefill(model: GPT2LMModel, contexts: Sequence[Sequence[int]], settings: BeamSettings,
             head: torch.Tensor) -> tuple[SearchState, TreeCache, torch.Tensor]:
    """The contexts, left-padded to one batch, through the model once: the state before step 0, the
    cache holding them (with room for K tokens per later step) and the (B, V) logits after each
    (``head``: the LM head weight, as ``padded_head`` gives it)."""
    device = model.transformer.wte.weight.device
    B, K, E = len(contexts), settings.beam, settings.eval_len
    L = max(len(c) for c in contexts)
    ids = torch.zeros(B, L, dtype=torch.long)
    for b, c in enumerate(contexts):
        ids[b, L - len(c):] = torch.as_tensor(c, dtype=torch.long)
    lengths = torch.tensor([len(c) for c in contexts], device=device)
    pad = L - lengths
    keep = torch.arange(L, device=device)[None] >= pad[:, None]
    cache = TreeCache(model.config, B, L + (E - 1) * K, model.transformer.wte.weight.dtype, device)
    positions = (torch.arange(L, device=device)[None] - pad[:, None]).clamp(min=0)
    hidden = model.hidden_states(ids.to(device), positions, cache, attention_mask(keep, L))
    return SearchState.start(lengths, keep, K, E), cache, model.logits(hidden[:, -1], head)


def _next_logits(model: GPT2LMModel, state: SearchState, cache: TreeCache, step: int,
                 beams: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """Step >= 1: every beam's token of the step before goes in (beam j's into cache slot j of that
    step) and attends to its input's context and its own ancestors only; (B*K, V) logits in the model's
    dtype."""
    K = len(beams)
    state.slot_of[:, :, step - 1] = beams
    tree = (state.slot_of[:, :, :step, None] == beams).flatten(2)                 # (B, K, step*K)
    mask = torch.cat((state.keep[:, None, :].expand(-1, K, -1), tree), dim=2)[:, None]
    positions = (state.lengths + step - 1)[:, None].expand(-1, K)
    hidden = model.hidden_states(state.history[:, :, step - 1], positions, cache, mask)
    return model.logits(hidden, head).view(-1, model.config.vocab_size)


def _best_continuations(logits: torch.Tensor, state: SearchState, step: int, settings: BeamSettings,
                        eos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each input's K best continuations after upstream's rules, best first: their scores, parent beams
    and tokens, (B, K) each. Upstream ranks all K*V sums ``beam score + log-prob`` at once (step 0: beam
    0's V log-probs, every beam being the same there). A beam's K best tokens by log-prob are its K best
    by sum (adding its score keeps the order), so the K best of those K*K candidates are the K best of
    all: one top-k per beam over V, then a sort of K*K. Only exact ties can come out in another order
    than one top-k over K*V gives (which torch leaves unspecified too); here the lower parent comes first."""
    B, K = state.beam_scores.shape
    if step == 0:
        scores, token = _log_probs(postprocess_scores(logits, None, 0, settings, eos)).topk(K, dim=1)
        return scores, torch.zeros_like(token), token
    postprocess_scores(logits, state.history[:, :, :step].reshape(-1, step), step, settings, eos)
    log_probs, tokens = _log_probs(logits).topk(K, dim=1)                   # (B*K, K) per beam
    sums = (log_probs.view(B, K, K) + state.beam_scores[:, :, None]).view(B, K * K)
    scores, pick = sums.sort(dim=1, descending=True, stable=True)
    pick = pick[:, :K]
    return scores[:, :K], pick // K, tokens.view(B, K * K).gather(1, pick)


def _follow(state: SearchState, parent: torch.Tensor, token: torch.Tensor, step: int) -> None:
    """Each new beam's history and cache slots become its parent's, plus its token of this step."""
    follow = parent[:, :, None].expand(-1, -1, state.history.size(2))
    state.history = state.history.gather(1, follow)
    state.history[:, :, step] = token
    state.slot_of = state.slot_of.gather(1, follow)


def keep_best(state: SearchState, candidate: torch.Tensor, scores: torch.Tensor) -> None:
    """Upstream's ``_add_beam_candidate`` for one step's candidates (B, K) of scores (B, K): taken in
    beam order, a candidate replaces the best hypothesis when there is none or it scores strictly more;
    so the first candidate of the highest score wins if that beats the best."""
    key = scores.masked_fill(~candidate, NEG_INF)
    top = key.max(1).values
    first = (candidate & (key == top[:, None])).int().argmax(1)
    any_cand = candidate.any(1)
    replace = any_cand & (~state.has_best | (state.best_score < top))
    state.best_score = torch.where(replace, top, state.best_score)
    state.has_best = state.has_best | any_cand
    chosen = state.history[torch.arange(len(first), device=first.device), first]
    state.best_seq = torch.where(replace[:, None], chosen, state.best_seq)


def _end_beams(state: SearchState, top_scores: torch.Tensor, token: torch.Tensor, step: int,
               settings: BeamSettings, eos: torch.Tensor) -> None:
    """A beam whose new token is an EOS becomes a finished hypothesis (``keep_best``) and dies; after
    the last step every live beam does. Inputs that stopped searching take no hypotheses."""
    lp, E = settings.length_penalty, settings.eval_len
    ended = torch.isin(token, eos)
    keep_best(state, ended & state.searching[:, None], top_scores / float((step + 1) ** lp))
    state.beam_scores = top_scores.masked_fill(ended, NEG_INF)
    if step == E - 1:
        keep_best(state, state.searching[:, None].expand_as(ended), state.beam_scores / float(E ** lp))


def _stop_settled(state: SearchState, step: int, settings: BeamSettings, early_stop: bool) -> tuple[int, int]:
    """The exact early stop (module docstring): an input whose live beams can no longer reach a score
    above its best hypothesis stops searching. Returns (inputs that stopped now, inputs still
    searching), the step's one read from the device."""
    factor = length_factor_bound(step, settings.eval_len, settings.length_penalty)
    can_improve = ((state.beam_scores / factor) > state.best_score[:, None]).any(1)
    newly_done = state.searching & state.has_best & ~can_improve & early_stop
    state.searching = state.searching & ~newly_done
    n_done, n_searching = torch.stack((newly_done.sum(), state.searching.sum())).tolist()
    return n_done, n_searching


def _compact(state: SearchState, cache: TreeCache, out: torch.Tensor, n_searching: int) -> SearchState:
    """Drop the inputs that stopped: their outputs go to ``out`` (by input), the cache and the state
    keep the other rows, in order. No read from the device: ``n_searching`` is already known."""
    out[state.rows] = state.best_seq  # final for rows that stopped; rows that go on are written again later
    stopped = (~state.searching).to(torch.uint8)  # not bool: CUDA's sort has not always taken bool
    index = torch.argsort(stopped, stable=True)[:n_searching]  # the searching rows, ascending
    cache.keep_rows(index)
    return state.select(index)


def _count(stats: dict, key: str, n: int = 1) -> None:
    stats[key] = stats.get(key, 0) + n


@torch.inference_mode()
def _search(model: GPT2LMModel, contexts: Sequence[Sequence[int]], settings: BeamSettings,
            on_finished: Callable[[int], None] = lambda n: None, early_stop: bool = True,
            stats: dict | None = None) -> torch.Tensor:
    """Beam search for a batch of (already truncated) contexts; (B, eval_len) best sequences on the CPU.

    ``early_stop=False`` runs every input for all ``eval_len`` steps (tests prove it changes nothing);
    ``stats`` accumulates ``steps`` (forward passes), ``input_steps`` (inputs x steps searched) and
    ``compactions`` (times finished inputs were dropped from the batch).
    """
    stats = {} if stats is None else stats
    V, E = model.config.vocab_size, settings.eval_len
    head = padded_head(model.transformer.wte.weight)  # aligned for tensor cores (bf16); fp32 as it is
    state, cache, logits = _prefill(model, contexts, settings, head)
    eos = torch.tensor(settings.eos_in_vocab(V), dtype=torch.long, device=logits.device)
    beams = torch.arange(settings.beam, device=logits.device)
    out = torch.zeros_like(state.best_seq)                   # by input: rows dropped from the batch
    for step in range(E):
        _count(stats, "steps")
        _count(stats, "input_steps", len(state.rows))
        if step > 0:
            logits = _next_logits(model, state, cache, step, beams, head)
        top_scores, parent, token = _best_continuations(logits, state, step, settings, eos)
        _follow(state, parent, token, step)
        _end_beams(state, top_scores, token, step, settings, eos)
        if step == E - 1:
            break
        n_done, n_searching = _stop_settled(state, step, settings, early_stop)
        if n_done:
            on_finished(n_done)
        if n_searching == 0:
            break
        if n_searching <= 0.75 * len(state.rows):  # drop finished inputs so later steps do less work
            state = _compact(state, cache, out, n_searching)
            _count(stats, "compactions")
    on_finished(int(state.searching.sum()))
    out[state.rows] = state.best_seq
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
UPSTREAM_DEFAULTS = BeamSettings()  # upstream gpt2_beam.py's flag defaults: gpt2_lora.beam's
PAPER_SETTINGS = BeamSettings(**E2E.headline.search_fields())  # the paper's E2E decoding (gpt2_lora/recipes.py)


def read_contexts(path: str, vocab_size: int | None = None) -> list[list[int]]:
    """The ``context`` ids of each line of an encoded jsonl file (upstream FT_Dataset's input)."""
    return [context for context, _ in read_encoded(path, "--data file", vocab_size)]


def add_decoding_flags(parser: argparse.ArgumentParser, defaults: BeamSettings, group=None):
    """The search flags, named as upstream gpt2_beam.py's, with the values of ``defaults``
    (``settings_from_args`` reads them back). ``--eos_token_id`` adds to the default EOS ids."""
    g = group if group is not None else parser.add_argument_group("decoding")
    d = defaults
    g.add_argument("--seq_len", type=int, default=d.seq_len, help="context keeps seq_len - eval_len tokens")
    g.add_argument("--eval_len", type=int, default=d.eval_len, help="tokens to generate")
    g.add_argument("--min_length", type=int, default=d.min_length, help="minimum generation length")
    g.add_argument("--beam", type=int, default=d.beam, help="beam search size")
    g.add_argument("--length_penalty", type=float, default=d.length_penalty,
                   help="a hypothesis scores sum_logprob / length ** length_penalty")
    g.add_argument("--no_repeat_ngram_size", type=int, default=d.no_repeat_ngram_size,
                   help="n-grams of this size never repeat in the generated tokens (0: off)")
    g.add_argument("--repetition_penalty", type=float, default=d.repetition_penalty,
                   help="generated tokens' logits: < 0 multiplied, others divided by it (1: off)")
    besides = f" besides {', '.join(map(str, d.eos_token_id))}" if d.eos_token_id else ""
    g.add_argument("--eos_token_id", action="append", type=int, default=list(d.eos_token_id),
                   help=f"an EOS id{besides} (repeatable)")
    return g


def settings_from_args(args: argparse.Namespace) -> BeamSettings:
    """The BeamSettings of the flags ``add_decoding_flags`` added (each flag is named as its field)."""
    values = {f.name: getattr(args, f.name) for f in fields(BeamSettings)}
    return BeamSettings(**values | {"eos_token_id": tuple(values["eos_token_id"])})


def _reword(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    # a shared flag whose effect differs here (argparse has no public way to reach an added action)
    parser._option_string_actions[flag].help = help


def build_parser() -> Parser:
    p = Parser(prog="python -m gpt2_lora.beam", description="GPT-2 (LoRA) beam decoding, same output as "
                   "microsoft/LoRA src/gpt2_beam.py --batch_size 1, much faster.")
    # upstream gpu.py flags: accepted; decoding runs in one process (rank 0)
    add_launcher_flags(p)
    _reword(p, "--local_rank", "accepted for compatibility: decoding runs in one process")
    _reword(p, "--rank", "a rank other than 0 exits at once: decoding runs on rank 0 only "
                         "(RANK in the environment wins)")
    p.add_argument("--random_seed", default=10, type=int, help="seed (random weights when no checkpoint)")
    # upstream gpt2_beam.py flags
    p.add_argument("--data", type=str, default="../data/wikitext-103", help="encoded jsonl to decode")
    p.add_argument("--batch_size", type=int, default=10,
                   help="accepted for compatibility: outputs never depend on batching, which is automatic "
                        "(see --max_batch_inputs)")
    p.add_argument("--work_dir", type=str, default=default_work_dir(), help="output folder")
    p.add_argument("--output_file", type=str, default="beam_prediction.jsonl", help="name inside --work_dir")
    add_decoding_flags(p, UPSTREAM_DEFAULTS)
    add_model_flags(p, model_card="gpt2.sm", lora_dim=0, lora_alpha=128,
                    init_help="checkpoint (full, or LoRA-only with --base_checkpoint)")
    # ours
    add_device_flags(p, precisions=("fp32", "bf16"), precision_default="fp32",
                     precision_help="fp32: the parity path; bf16: faster, may change some tokens")
    p.add_argument("--max_batch_inputs", type=int, default=0,
                   help="most distinct inputs searched together (0: as many as fit in memory)")
    return p


def load_model(args: argparse.Namespace, config: GPT2Config, device: torch.device,
               dtype: torch.dtype) -> GPT2LMModel:
    from . import loading

    return loading.load_model(loading.spec_from_args(args), device, dtype, config=config)  # merged, eval mode


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
    settings = settings_from_args(args)
    from . import loading  # model flags left at their defaults yield to the checkpoint's own description

    config = loading.resolve_config(loading.spec_from_args(args, build_parser(), argv))
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
