"""Beam search: the fast batched path against a deliberately simple reference written here from
upstream gpt2_beam.py's rules (batch 1, full recompute, Python loops), on conftest's beam_model (a tiny GPT-2
trained for a few seconds on repetitive sequences, so the searches meet EOS at many lengths, unfinished beams and
repeated n-grams) and on random models; the CLI. Against upstream's own ``beam()``:
tests/parity/test_beam_upstream.py.
"""

from __future__ import annotations

import argparse
import json
import random

import pytest
import torch
import torch.nn.functional as F

from gpt2_lora import beam as beam_mod
from gpt2_lora.beam import BeamSettings, generate
from gpt2_lora.model import GPT2Config, GPT2LMModel
from helpers import (BEAM_OPTIONS, EOS_A, EOS_B, PATTERN_SIZES, SEP, beam_settings, one_line_error, pattern_config,
                     write_contexts)

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------- the simple reference
def reference_beam(model: GPT2LMModel, context: list[int], s: BeamSettings) -> list[int]:
    """gpt2_beam.py for one input, step by step: recompute the whole sequence of every beam each step."""
    ctx = context[-(s.seq_len - s.eval_len):]
    K, E, lp, V = s.beam, s.eval_len, s.length_penalty, model.config.vocab_size
    eos = [e for e in s.eos_token_id if e < V]
    history: list[list[int]] = [[] for _ in range(K)]
    beam_scores = torch.zeros(K)
    best_score, best_seq = None, [0] * E

    def add_candidate(j: int, length: int) -> None:
        nonlocal best_score
        score = beam_scores[j] / length ** lp
        if best_score is None or best_score < score:
            best_score = score
            best_seq[:length] = history[j]
        beam_scores[j] = float("-inf")

    with torch.no_grad():
        for i in range(E):
            ids = torch.tensor([ctx + h for h in history])
            logits = model(ids)[:, -1, :].clone()                  # (K, V), no cache
            for row, h in zip(logits, history):
                if s.repetition_penalty != 1.0 and i > 0:
                    for tok in set(h):
                        if row[tok] < 0:
                            row[tok] *= s.repetition_penalty
                        else:
                            row[tok] /= s.repetition_penalty
                if i < s.min_length:
                    for e in eos:
                        row[e] = float("-inf")
                n = s.no_repeat_ngram_size
                if n > 0 and i > 0 and i + 1 >= n:
                    follows: dict[tuple, list[int]] = {}
                    for p in range(len(h) - n + 1):
                        follows.setdefault(tuple(h[p:p + n - 1]), []).append(h[p + n - 1])
                    for tok in follows.get(tuple(h[i + 1 - n:i]), []):
                        row[tok] = float("-inf")
            logprob = torch.log(F.softmax(logits, dim=-1))
            if i == 0:
                scores = logprob[0]
            else:
                scores = (beam_scores[:, None] + logprob).view(-1)
            top_scores, top = torch.topk(scores, K)
            history = [history[t // V] + [t % V] if i > 0 else [t % V] for t in top.tolist()]
            beam_scores = top_scores.clone()
            for j in range(K):
                if history[j][-1] in eos:
                    add_candidate(j, i + 1)
        for j in range(K):
            add_candidate(j, E)
    return best_seq


@pytest.mark.parametrize("options", BEAM_OPTIONS, ids=lambda o: "-".join(f"{k[:3]}{v}" for k, v in o.items()))
def test_fast_path_equals_reference(beam_model, beam_contexts, options):
    s = beam_settings(**options)
    expected = [reference_beam(beam_model, c, s) for c in beam_contexts]
    assert generate(beam_model, beam_contexts, s, progress=False) == expected
    # the searches really exercise EOS: hypotheses end at several lengths
    lengths = {next((k + 1 for k, t in enumerate(seq) if t in s.eos_token_id), None) for seq in expected}
    assert len(lengths - {None}) >= 2


def test_batching_and_dedup_do_not_change_outputs(beam_model, beam_contexts):
    s = beam_settings(beam=4, length_penalty=0.8, no_repeat_ngram_size=2, eos_token_id=(EOS_A, EOS_B))
    expected = generate(beam_model, beam_contexts, s, progress=False)
    rng = random.Random(1)
    order = [rng.randrange(len(beam_contexts)) for _ in range(40)]    # many repeats, shuffled
    repeated = [beam_contexts[i] for i in order]
    stats: dict = {}
    for cap in (1, 3, 0):
        got = generate(beam_model, repeated, s, max_batch_inputs=cap, progress=False, stats=stats)
        assert got == [expected[i] for i in order], f"max_batch_inputs={cap}"
    assert stats["unique"] == len(set(order)) and stats["lines"] == 40
    # contexts equal after truncation are one input
    long = beam_contexts[-1]
    assert generate(beam_model, [[7, 7, 7] + long, long], s, progress=False)[0] == expected[-1]


@pytest.mark.parametrize("options", BEAM_OPTIONS[1:], ids=lambda o: f"beam{o['beam']}-lp{o['length_penalty']}")
def test_early_stop_never_changes_outputs(beam_model, beam_contexts, options):
    s = beam_settings(**options, eval_len=30)
    fast, full = {}, {}
    assert generate(beam_model, beam_contexts, s, progress=False, stats=fast) == \
        generate(beam_model, beam_contexts, s, progress=False, stats=full, early_stop=False)
    assert full["input_steps"] == len(beam_contexts) * 30
    if options["length_penalty"] <= 1.0:  # a large penalty keeps the bound loose: nothing stops early there
        assert fast["input_steps"] < full["input_steps"]
        assert fast.get("compactions", 0) >= 1  # finished inputs were dropped mid-search, outputs unchanged


@pytest.mark.parametrize("lp", [-2.0, -0.5, -0.1, 0.0, 0.3, 0.8, 1.0, 2.5])
def test_early_stop_bound_covers_every_reachable_length(lp):
    for eval_len in (1, 2, 5, 64):
        for step in range(eval_len - 1):
            reachable = [float(L ** lp) for L in range(step + 2, eval_len + 1)]
            assert beam_mod.length_factor_bound(step, eval_len, lp) == max(reachable)


# ------------------------------------------------------------ random models: fast paths vs plain
# ------------------------------------------------------------ random models: fast paths vs plain
def _random_case(seed: int, length_penalty: float):
    """A random tiny GPT-2, random settings, and 28 lines over 16 distinct random contexts, some
    longer than kept. The embeddings are scaled up (peaked next-token distributions), those of the
    EOS ids most: searches then end at many lengths, and inputs left after a compaction still
    change their outputs, so a fast path that went wrong shows."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    vocab = rng.randrange(12, 40)
    net = GPT2LMModel(GPT2Config(vocab_size=vocab, n_positions=48, n_ctx=48, n_embd=32,
                                 n_layer=rng.choice([1, 2]), n_head=2))
    E = rng.randint(4, 14)
    eos = rng.sample(range(vocab), rng.randint(1, 3))
    with torch.no_grad():
        net.transformer.wte.weight.mul_(rng.choice([2.0, 4.0, 8.0]))
        net.transformer.wte.weight[eos] *= rng.choice([1.0, 3.0])
    eos += rng.choice([[], [50256]])  # outside the vocabulary: never generated
    s = BeamSettings(beam=rng.randint(1, 5), eval_len=E, seq_len=E + rng.randint(4, 12),
                     min_length=rng.choice([0, 0, 1, E // 2]), length_penalty=length_penalty,
                     no_repeat_ngram_size=rng.choice([0, 1, 2, 3, 4]),
                     repetition_penalty=rng.choice([1.0, 1.0, 0.6, 1.5]), eos_token_id=tuple(eos))
    unique = [[rng.randrange(vocab) for _ in range(rng.randint(1, 20))] for _ in range(16)]
    return net.eval(), s, unique, [rng.randrange(len(unique)) for _ in range(28)]


@pytest.mark.parametrize("penalties", [(-1.5, -0.5, -0.1), (0.0,), (0.3, 0.8, 1.0, 2.0)],
                         ids=["lp<0", "lp=0", "lp>0"])
def test_fast_paths_equal_plain_search_on_random_models(one_thread, penalties):
    """Everything that makes the search fast (duplicate lines searched once, many inputs in one
    batch, the exact early stop, compaction) against the plain search: each distinct context
    alone, all steps, fanned out to the lines here."""
    fast_steps = full_steps = compactions = 0
    for case in range(6):
        lp = penalties[case % len(penalties)]
        net, s, unique, picks = _random_case(100 * case + int(10 * lp), lp)
        stats: dict = {}
        fast = generate(net, [unique[i] for i in picks], s, progress=False, stats=stats)
        plain = generate(net, unique, s, progress=False, early_stop=False, max_batch_inputs=1)
        assert fast == [plain[i] for i in picks], (case, s)
        assert [reference_beam(net, c, s) for c in unique[:2]] == plain[:2], (case, s)
        assert stats["unique"] < stats["lines"]
        fast_steps += stats["input_steps"]
        full_steps += stats["unique"] * s.eval_len
        compactions += stats.get("compactions", 0)
    # the fast paths really ran: inputs stopped early and finished ones left the batch
    assert fast_steps < full_steps and compactions >= 1


def old_postprocess_scores(scores, history, step, settings, eos):
    """postprocess_scores as it was before the two history rules became one scatter (kept to prove
    the new one equal): repetition penalty, EOS ban, n-gram ban, each its own write."""
    rp = settings.repetition_penalty
    if rp != 1.0 and history is not None:
        seen = scores.gather(1, history)
        scores.scatter_(1, history, torch.where(seen < 0, seen * rp, seen / rp))
    if step < settings.min_length:
        scores[:, eos] = float("-inf")
    n = settings.no_repeat_ngram_size
    if n > 0 and history is not None and step >= n:
        grams = history.unfold(1, n, 1)
        hit = (grams[:, :, :-1] == history[:, None, step - n + 1:]).all(-1)
        ban = torch.full(hit.shape, float("inf"), dtype=scores.dtype).masked_fill_(hit, float("-inf"))
        scores.scatter_reduce_(1, grams[:, :, -1], ban, "amin")
    return scores


def test_postprocess_equals_the_old_formula_bit_for_bit():
    rng = random.Random(7)
    gen = torch.Generator().manual_seed(7)
    for _ in range(400):
        vocab, rows, step = rng.randrange(3, 30), rng.randrange(1, 7), rng.randrange(0, 12)
        scores = torch.randn(rows, vocab, generator=gen) * rng.choice([0.5, 3.0])
        scores[torch.rand(rows, vocab, generator=gen) < 0.1] = 0.0      # zeros of both signs, and -inf
        scores[torch.rand(rows, vocab, generator=gen) < 0.1] = -0.0
        scores[torch.rand(rows, vocab, generator=gen) < 0.05] = float("-inf")
        # few distinct tokens, so n-grams and tokens repeat
        history = torch.randint(0, rng.randrange(1, vocab + 1), (rows, step), generator=gen) if step else None
        s = BeamSettings(min_length=rng.randrange(0, 12), no_repeat_ngram_size=rng.randrange(0, 5),
                         repetition_penalty=rng.choice([1.0, 0.5, 1.3, 2.0]))
        eos = torch.tensor(rng.sample(range(vocab), rng.randrange(0, 3)), dtype=torch.long)
        new = beam_mod.postprocess_scores(scores.clone(), history, step, s, eos)
        old = old_postprocess_scores(scores.clone(), history, step, s, eos)
        assert torch.equal(new.view(torch.int32), old.view(torch.int32)), (s, step)


def test_keep_rows_moves_the_kept_rows_to_the_front():
    cache = beam_mod.TreeCache(pattern_config(), 5, 8, torch.float32, "cpu")
    cache.k.copy_(torch.randn(cache.shape))
    cache.v.copy_(torch.randn(cache.shape))
    cache.advance(6)                            # columns 6, 7 are unused: not moved
    k, v = cache.k.clone(), cache.v.clone()
    cache.keep_rows(torch.tensor([1, 3, 4]))
    assert cache.batch_size == 3 and cache.k.shape == (2, 3, 4, 8, 16)
    assert torch.equal(cache.k[:, :, :, :6], k[:, [1, 3, 4], :, :6])
    assert torch.equal(cache.v[:, :, :, :6], v[:, [1, 3, 4], :, :6])


def test_search_state_select_keeps_rows_of_every_field():
    state = beam_mod.SearchState.start(torch.tensor([3, 5, 2]), torch.ones(3, 5, dtype=torch.bool), 2, 4)
    state.history = torch.arange(24).view(3, 2, 4)
    state.best_score = torch.tensor([-1.0, -2.0, -3.0])
    picked = state.select(torch.tensor([2, 0]))
    assert picked.rows.tolist() == [2, 0] and picked.lengths.tolist() == [2, 3]
    assert torch.equal(picked.history, state.history[[2, 0]]) and picked.best_score.tolist() == [-3.0, -1.0]
    assert picked.beam_scores.shape == (2, 2) and picked.best_seq.shape == (2, 4)


def test_postprocess_matches_hand_computed_bans():
    s = BeamSettings(no_repeat_ngram_size=2, repetition_penalty=2.0, min_length=5, eos_token_id=(0,))
    scores = torch.tensor([[1.0, -1.0, 2.0, -2.0, 0.5]])
    history = torch.tensor([[3, 2, 3, 1]])      # bigrams 3->2, 2->3, 3->1; last token 1 starts none
    out = beam_mod.postprocess_scores(scores.clone(), history, 4, s, torch.tensor([0]))
    assert out.tolist() == [[float("-inf"), -2.0, 1.0, -4.0, 0.5]]
    history = torch.tensor([[3, 2, 3]])         # last token 3: 2 follows it once already
    out = beam_mod.postprocess_scores(scores.clone(), history, 3, s, torch.tensor([0]))
    assert out.tolist() == [[float("-inf"), -1.0, float("-inf"), -4.0, 0.5]]


# -------------------------------------------------------------------------------------- the CLI
def test_cli_writes_upstream_format(beam_model, beam_contexts, tmp_path):
    data = tmp_path / "test.jsonl"
    write_contexts(data, beam_contexts)
    (tmp_path / "config.json").write_text(json.dumps(PATTERN_SIZES))
    torch.save(beam_model.state_dict(), tmp_path / "model.pt")
    code = beam_mod.main([
        "--data", str(data), "--batch_size", "1", "--seq_len", "36", "--eval_len", "16",
        "--model_card", str(tmp_path / "config.json"), "--init_checkpoint", str(tmp_path / "model.pt"),
        "--platform", "local", "--beam", "3", "--length_penalty", "0.8", "--no_repeat_ngram_size", "3",
        "--repetition_penalty", "1.0", "--eos_token_id", str(EOS_A), "--eos_token_id", str(EOS_B),
        "--work_dir", str(tmp_path / "out"), "--output_file", "pred.jsonl", "--device", "cpu"])
    assert code == 0
    lines = (tmp_path / "out" / "pred.jsonl").read_text().splitlines()
    # --eos_token_id appends to [50256] (outside this vocabulary, so only 62 and 63 can end a beam)
    s = beam_settings(beam=3, eval_len=16, length_penalty=0.8, no_repeat_ngram_size=3, eos_token_id=(EOS_A, EOS_B))
    expected = [reference_beam(beam_model, c, s) for c in beam_contexts]
    assert lines == [json.dumps({"id": i, "predict": p}) for i, p in enumerate(expected)]


def test_cli_lora_only_checkpoint_over_base(beam_model, beam_contexts, tmp_path):
    from gpt2_lora import lora

    lora_model = GPT2LMModel(pattern_config(lora_attn_dim=2, lora_attn_alpha=4))
    lora_model.load_weight(beam_model.state_dict())
    torch.manual_seed(3)
    for name, p in lora_model.named_parameters():
        if "lora_" in name:
            torch.nn.init.normal_(p, std=0.3)     # a LoRA update big enough to change outputs
    torch.save(beam_model.state_dict(), tmp_path / "base.pt")
    torch.save(lora.lora_state_dict(lora_model), tmp_path / "lora.pt")
    data = tmp_path / "d.jsonl"
    write_contexts(data, beam_contexts[:6])
    (tmp_path / "config.json").write_text(json.dumps(PATTERN_SIZES))
    common = ["--data", str(data), "--seq_len", "36", "--eval_len", "12", "--beam", "2",
              "--model_card", str(tmp_path / "config.json"), "--work_dir", str(tmp_path), "--device", "cpu"]
    assert beam_mod.main(common + ["--lora_dim", "2", "--lora_alpha", "4", "--base_checkpoint",
                                   str(tmp_path / "base.pt"), "--init_checkpoint", str(tmp_path / "lora.pt"),
                                   "--output_file", "lora.jsonl"]) == 0
    s = beam_settings(beam=2, eval_len=12, eos_token_id=())
    with_lora = [reference_beam(lora_model.eval(), c, s) for c in beam_contexts[:6]]
    got = [json.loads(x)["predict"] for x in (tmp_path / "lora.jsonl").read_text().splitlines()]
    assert got == with_lora
    assert with_lora != [reference_beam(beam_model, c, s) for c in beam_contexts[:6]]  # the LoRA weights mattered
    # a LoRA-only checkpoint without its base is refused in one line
    with pytest.raises(SystemExit) as err:
        beam_mod.main(common + ["--lora_dim", "2", "--init_checkpoint", str(tmp_path / "lora.pt")])
    assert err.value.code == 2


@pytest.mark.parametrize("flags, message", [
    (["--seq_len", "16", "--eval_len", "16"], "must exceed --eval_len"),
    (["--beam", "0"], "--beam must be >= 1"),
    (["--seq_len", "32", "--eval_len", "8", "--repetition_penalty", "inf"], "--repetition_penalty must be a finite"),
    (["--seq_len", "32", "--eval_len", "8", "--max_batch_inputs", "-1"], "--max_batch_inputs must be >= 0"),
    (["--lora_dim", "-1"], "lora_attn_dim (--lora_dim) must be >= 0"),
])
def test_cli_rejects_bad_settings(tmp_path, capsys, flags, message):
    data = tmp_path / "d.jsonl"
    write_contexts(data, [[3, 4, SEP]])
    (tmp_path / "config.json").write_text(json.dumps(PATTERN_SIZES))
    with pytest.raises(SystemExit) as err:
        beam_mod.main(["--data", str(data), "--model_card", str(tmp_path / "config.json"), "--device", "cpu",
                       "--work_dir", str(tmp_path)] + flags)
    assert err.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--bogus", "1"], "unrecognized arguments: --bogus 1"),
    (["--beam", "ten"], "argument --beam: invalid int value: 'ten'"),
    (["--precision", "fp16"], "argument --precision: invalid choice: 'fp16'"),
])
def test_cli_bad_flag_is_one_line(capsys, flags, message):
    with pytest.raises(SystemExit) as err:
        beam_mod.main(flags)
    lines = capsys.readouterr().err.splitlines()
    assert err.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {message}") and lines[0].endswith(" (see --help)")


def test_decoding_flags_read_back_as_settings():
    from dataclasses import replace

    for defaults in (beam_mod.UPSTREAM_DEFAULTS, beam_mod.PAPER_SETTINGS):
        parser = argparse.ArgumentParser()
        beam_mod.add_decoding_flags(parser, defaults)
        assert beam_mod.settings_from_args(parser.parse_args([])) == defaults
        args = parser.parse_args(["--beam", "3", "--eval_len", "9", "--seq_len", "40", "--min_length", "2",
                                  "--length_penalty", "-0.5", "--no_repeat_ngram_size", "0",
                                  "--repetition_penalty", "1.5", "--eos_token_id", "7", "--eos_token_id", "9"])
        assert beam_mod.settings_from_args(args) == replace(
            defaults, beam=3, eval_len=9, seq_len=40, min_length=2, length_penalty=-0.5, no_repeat_ngram_size=0,
            repetition_penalty=1.5, eos_token_id=defaults.eos_token_id + (7, 9))  # added to the defaults
        assert beam_mod.settings_from_args(parser.parse_args([])) == defaults  # the default list is not changed
    assert beam_mod.UPSTREAM_DEFAULTS == BeamSettings()
    # the paper's E2E decoding (README of microsoft/LoRA): beam 10, penalty 0.8, no-repeat 4, EOS also "\n\n"
    paper = beam_mod.PAPER_SETTINGS
    assert (paper.beam, paper.length_penalty, paper.no_repeat_ngram_size, paper.eval_len) == (10, 0.8, 4, 64)
    assert paper.eos_token_id == (50256, 628)


def test_cli_names_bad_data_line(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"context": [1, 2], "completion": [3]}\n{"context": "text"}\n')
    with pytest.raises(SystemExit):
        beam_mod.main(["--data", str(data), "--device", "cpu", "--work_dir", str(tmp_path)])
    assert f"{data}:2:" in capsys.readouterr().err


def test_beam_refuses_to_write_over_its_data(tmp_path, capsys):
    data = tmp_path / "test.jsonl"
    data.write_text('{"context": [1, 2], "completion": [3]}\n')
    before = data.read_bytes()
    one_line_error(beam_mod.main, ["--data", str(data), "--device", "cpu", "--work_dir", str(tmp_path),
                                   "--output_file", "test.jsonl"], capsys, "is the --data file")
    one_line_error(beam_mod.main, ["--data", str(data), "--device", "cpu", "--work_dir", str(tmp_path),
                                   "--output_file", "."], capsys, "is a directory")
    assert data.read_bytes() == before


# ---------------------------------------------------------------------------- the fast paths' parts
def test_best_continuations_equal_one_top_k_over_all_beams():
    """One top-k per beam, then a sort of K*K, picks what upstream's one top-k over K*V picks."""
    gen = torch.Generator().manual_seed(5)
    B, K, V, step = 3, 4, 50, 6
    s = BeamSettings(beam=K, eval_len=10, seq_len=40, no_repeat_ngram_size=2, repetition_penalty=1.3)
    eos = torch.tensor([0])
    for trial in range(20):
        state = beam_mod.SearchState.start(torch.full((B,), 5), torch.ones(B, 5, dtype=torch.bool), K, s.eval_len)
        state.history[:, :, :step] = torch.randint(0, V, (B, K, step), generator=gen)
        state.beam_scores = -torch.rand(B, K, generator=gen) * 10
        state.beam_scores[0, 1] = float("-inf")  # a beam that ended in an EOS
        logits = torch.randn(B * K, V, generator=gen) * 3
        expected = beam_mod.postprocess_scores(logits.clone(), state.history[:, :, :step].reshape(-1, step), step, s, eos)
        expected = (F.softmax(expected, -1).log().view(B, K, V) + state.beam_scores[:, :, None]).view(B, -1)
        top, index = expected.topk(K, dim=1)
        scores, parent, token = beam_mod._best_continuations(logits.clone(), state, step, s, eos)
        assert torch.equal(scores, top) and torch.equal(parent, index // V) and torch.equal(token, index % V)


def test_tree_attention_equals_sdpa_in_fp32_and_bf16():
    """TreeCache.attend over strided cache views (as the search calls it) gives torch's attention."""
    gen = torch.Generator().manual_seed(1)
    cache = torch.randn(2, 3, 20, 8, generator=gen)[:, :, :13]  # (B, H, S, D) views of a longer buffer
    k, v = cache, cache.flip(1)
    q = torch.randn(2, 3, 4, 8, generator=gen)
    mask = torch.rand(2, 1, 4, 13, generator=gen) > 0.4
    mask[..., -1] = True
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(beam_mod.TreeCache.attend(q, k, v, mask), expected, atol=1e-6)
    low = beam_mod.TreeCache.attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask)
    assert low.dtype == torch.bfloat16 and torch.allclose(low.float(), expected, atol=3e-2)
    with pytest.raises(ValueError, match="explicit mask"):
        beam_mod.TreeCache.attend(q, k, v, mask, is_causal=True)


def test_bf16_search_mostly_follows_fp32(beam_model, beam_contexts):
    """The 16-bit path (bf16 logits, one fused log_softmax, the fused attention) on a model that is sure
    of its tokens, beam 4 (the per-beam top-k and the K*K sort): most outputs equal fp32's (13 of 15, as
    with the float-copy path before it), and every one is a well-formed output."""
    import copy

    s = beam_settings(beam=4, length_penalty=0.8, no_repeat_ngram_size=2)
    fp32 = generate(beam_model, beam_contexts, s, progress=False)
    bf16 = generate(copy.deepcopy(beam_model).to(torch.bfloat16), beam_contexts, s, progress=False)
    assert all(len(out) == s.eval_len for out in bf16)
    same = sum(a == b for a, b in zip(fp32, bf16))
    assert same >= 0.7 * len(fp32), f"{same} of {len(fp32)} lines equal"
