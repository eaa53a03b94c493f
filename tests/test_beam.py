"""Beam search: the fast batched path against a deliberately simple reference written here from
upstream gpt2_beam.py's rules (batch 1, full recompute, Python loops), and against upstream's own
``beam()`` when its source is available. The model is a tiny GPT-2 trained for a few seconds on
repetitive sequences, so the searches meet EOS at many lengths, unfinished beams and repeated n-grams.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import random
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gpt2_lora import beam as beam_mod
from gpt2_lora.beam import BeamSettings, generate
from gpt2_lora.model import GPT2Config, GPT2LMModel
from conftest import UPSTREAM_NLG_SRC

V, SEP, EOS_A, EOS_B = 64, 1, 62, 63
UPSTREAM_SRC = UPSTREAM_NLG_SRC


# ------------------------------------------------------------------------------------- tiny model
def _sample(rng: random.Random) -> tuple[list[int], list[int]]:
    """context + [SEP] -> a period-2/3 pattern of context tokens, then EOS_A or EOS_B."""
    ctx = [rng.randrange(2, 40) for _ in range(rng.randint(2, 9))]
    period = [ctx[0], ctx[-1], rng.randrange(40, 60)] if len(ctx) % 2 else [ctx[0], ctx[-1]]
    completion = (period * 8)[: 2 * len(ctx) + rng.randint(0, 2)]
    return ctx + [SEP], completion + [EOS_A if ctx[0] % 3 else EOS_B]


def _config(**overrides) -> GPT2Config:
    return GPT2Config(vocab_size=V, n_positions=64, n_ctx=64, n_embd=64, n_layer=2, n_head=4, **overrides)


@pytest.fixture(scope="module")
def one_thread():
    # the CI box has 2 cores shared by many jobs; one thread is several times faster here
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(one_thread) -> GPT2LMModel:
    torch.manual_seed(0)
    rng = random.Random(0)
    net = GPT2LMModel(_config())
    opt = torch.optim.Adam(net.parameters(), lr=6e-3)
    for _ in range(100):
        batch = [_sample(rng) for _ in range(16)]
        T = max(len(c) + len(x) for c, x in batch)
        ids = torch.zeros(len(batch), T, dtype=torch.long)
        target = torch.full((len(batch), T), -100)
        for i, (c, x) in enumerate(batch):
            ids[i, :len(c) + len(x)] = torch.tensor(c + x)
            target[i, len(c) - 1:len(c) + len(x) - 1] = torch.tensor(x)
        loss = F.cross_entropy(net(ids).view(-1, V), target.view(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def contexts() -> list[list[int]]:
    rng = random.Random(5)
    ctxs = [_sample(rng)[0] for _ in range(12)]
    # longer than seq_len - eval_len (12 below): upstream keeps the last tokens
    ctxs += [[rng.randrange(2, 40) for _ in range(n)] + [SEP] for n in (13, 17, 22)]
    return ctxs


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


OPTIONS = [
    dict(beam=1, length_penalty=1.0, no_repeat_ngram_size=0, eos_token_id=(EOS_A, EOS_B)),
    dict(beam=3, length_penalty=0.8, no_repeat_ngram_size=2, repetition_penalty=1.3, min_length=3,
         eos_token_id=(EOS_A, EOS_B)),
    dict(beam=5, length_penalty=1.0, no_repeat_ngram_size=3, eos_token_id=(EOS_A,)),
    dict(beam=5, length_penalty=-0.5, no_repeat_ngram_size=0, eos_token_id=(50256, EOS_A, EOS_B)),
    dict(beam=3, length_penalty=0.0, no_repeat_ngram_size=1, repetition_penalty=0.7, eos_token_id=(EOS_B,)),
    dict(beam=4, length_penalty=2.0, no_repeat_ngram_size=4, min_length=6, eos_token_id=(EOS_A, EOS_B)),
    dict(beam=5, length_penalty=-0.1, no_repeat_ngram_size=2, eos_token_id=(EOS_A, EOS_B)),
]


def _settings(**kw) -> BeamSettings:
    return BeamSettings(eval_len=kw.pop("eval_len", 24), seq_len=kw.pop("seq_len", 36), **kw)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k[:3]}{v}" for k, v in o.items()))
def test_fast_path_equals_reference(model, contexts, options):
    s = _settings(**options)
    expected = [reference_beam(model, c, s) for c in contexts]
    assert generate(model, contexts, s, progress=False) == expected
    # the searches really exercise EOS: hypotheses end at several lengths
    lengths = {next((k + 1 for k, t in enumerate(seq) if t in s.eos_token_id), None) for seq in expected}
    assert len(lengths - {None}) >= 2


def test_batching_and_dedup_do_not_change_outputs(model, contexts):
    s = _settings(beam=4, length_penalty=0.8, no_repeat_ngram_size=2, eos_token_id=(EOS_A, EOS_B))
    expected = generate(model, contexts, s, progress=False)
    rng = random.Random(1)
    order = [rng.randrange(len(contexts)) for _ in range(40)]    # many repeats, shuffled
    repeated = [contexts[i] for i in order]
    stats: dict = {}
    for cap in (1, 3, 0):
        got = generate(model, repeated, s, max_batch_inputs=cap, progress=False, stats=stats)
        assert got == [expected[i] for i in order], f"max_batch_inputs={cap}"
    assert stats["unique"] == len(set(order)) and stats["lines"] == 40
    # contexts equal after truncation are one input
    long = contexts[-1]
    assert generate(model, [[7, 7, 7] + long, long], s, progress=False)[0] == expected[-1]


@pytest.mark.parametrize("options", OPTIONS[1:], ids=lambda o: f"beam{o['beam']}-lp{o['length_penalty']}")
def test_early_stop_never_changes_outputs(model, contexts, options):
    s = _settings(**options, eval_len=30)
    fast, full = {}, {}
    assert generate(model, contexts, s, progress=False, stats=fast) == \
        generate(model, contexts, s, progress=False, stats=full, early_stop=False)
    assert full["input_steps"] == len(contexts) * 30
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
    cache = beam_mod.TreeCache(_config(), 5, 8, torch.float32, "cpu")
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
def _write_jsonl(path: Path, contexts) -> None:
    path.write_text("".join(json.dumps({"context": c, "completion": [5, EOS_A]}) + "\n" for c in contexts))


def test_cli_writes_upstream_format(model, contexts, tmp_path):
    data = tmp_path / "test.jsonl"
    _write_jsonl(data, contexts)
    (tmp_path / "config.json").write_text(json.dumps(dict(vocab_size=V, n_positions=64, n_embd=64, n_layer=2,
                                                          n_head=4)))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    code = beam_mod.main([
        "--data", str(data), "--batch_size", "1", "--seq_len", "36", "--eval_len", "16",
        "--model_card", str(tmp_path / "config.json"), "--init_checkpoint", str(tmp_path / "model.pt"),
        "--platform", "local", "--beam", "3", "--length_penalty", "0.8", "--no_repeat_ngram_size", "3",
        "--repetition_penalty", "1.0", "--eos_token_id", str(EOS_A), "--eos_token_id", str(EOS_B),
        "--work_dir", str(tmp_path / "out"), "--output_file", "pred.jsonl", "--device", "cpu"])
    assert code == 0
    lines = (tmp_path / "out" / "pred.jsonl").read_text().splitlines()
    # --eos_token_id appends to [50256] (outside this vocabulary, so only 62 and 63 can end a beam)
    s = _settings(beam=3, eval_len=16, length_penalty=0.8, no_repeat_ngram_size=3, eos_token_id=(EOS_A, EOS_B))
    expected = [reference_beam(model, c, s) for c in contexts]
    assert lines == [json.dumps({"id": i, "predict": p}) for i, p in enumerate(expected)]


def test_cli_lora_only_checkpoint_over_base(model, contexts, tmp_path):
    from gpt2_lora import lora

    lora_model = GPT2LMModel(_config(lora_attn_dim=2, lora_attn_alpha=4))
    lora_model.load_weight(model.state_dict())
    torch.manual_seed(3)
    for name, p in lora_model.named_parameters():
        if "lora_" in name:
            torch.nn.init.normal_(p, std=0.3)     # a LoRA update big enough to change outputs
    torch.save(model.state_dict(), tmp_path / "base.pt")
    torch.save(lora.lora_state_dict(lora_model), tmp_path / "lora.pt")
    data = tmp_path / "d.jsonl"
    _write_jsonl(data, contexts[:6])
    (tmp_path / "config.json").write_text(json.dumps(dict(vocab_size=V, n_positions=64, n_embd=64, n_layer=2,
                                                          n_head=4)))
    common = ["--data", str(data), "--seq_len", "36", "--eval_len", "12", "--beam", "2",
              "--model_card", str(tmp_path / "config.json"), "--work_dir", str(tmp_path), "--device", "cpu"]
    assert beam_mod.main(common + ["--lora_dim", "2", "--lora_alpha", "4", "--base_checkpoint",
                                   str(tmp_path / "base.pt"), "--init_checkpoint", str(tmp_path / "lora.pt"),
                                   "--output_file", "lora.jsonl"]) == 0
    s = _settings(beam=2, eval_len=12, eos_token_id=())
    with_lora = [reference_beam(lora_model.eval(), c, s) for c in contexts[:6]]
    got = [json.loads(x)["predict"] for x in (tmp_path / "lora.jsonl").read_text().splitlines()]
    assert got == with_lora
    assert with_lora != [reference_beam(model, c, s) for c in contexts[:6]]  # the LoRA weights mattered
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
    _write_jsonl(data, [[3, 4, SEP]])
    (tmp_path / "config.json").write_text(json.dumps(dict(vocab_size=V, n_positions=64, n_embd=64, n_layer=2,
                                                          n_head=4)))
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


# ------------------------------------------------------------------- upstream's own beam() function
@pytest.fixture(scope="module")
def upstream_beam():
    if not (UPSTREAM_SRC / "gpt2_beam.py").is_file():
        pytest.skip("upstream microsoft/LoRA source not checked out")
    pytest.importorskip("loralib")
    sys.path.insert(0, str(UPSTREAM_SRC))
    try:
        module = importlib.import_module("gpt2_beam")
        upstream_model = importlib.import_module("model")
        data_utils = importlib.import_module("data_utils")
    finally:
        sys.path.remove(str(UPSTREAM_SRC))
    # single process: gather = stack of one, no barrier
    module.distributed_gather = lambda args, tensor: tensor[None]
    module.distributed_sync = lambda args: None
    return module, upstream_model, data_utils


def test_matches_upstream_beam_batch_1(model, contexts, upstream_beam, tmp_path):
    module, upstream_model, data_utils = upstream_beam
    net = upstream_model.GPT2LMModel(upstream_model.GPT2Config(
        vocab_size_or_config_json_file=V, n_positions=64, n_ctx=64, n_embd=64, n_layer=2, n_head=4))
    net.load_weight({k[len("transformer."):]: v.clone() for k, v in model.state_dict().items()})
    net.eval()
    data = tmp_path / "test.jsonl"
    _write_jsonl(data, contexts)
    for options in (OPTIONS[1], OPTIONS[3], OPTIONS[5]):
        s = _settings(**options, eval_len=20)
        args = argparse.Namespace(
            device="cpu", rank=0, world_size=1, work_dir=str(tmp_path), output_file="up.jsonl",
            beam=s.beam, eval_len=s.eval_len, min_length=s.min_length, length_penalty=s.length_penalty,
            no_repeat_ngram_size=s.no_repeat_ngram_size, repetition_penalty=s.repetition_penalty,
            eos_token_id=list(s.eos_token_id))
        module.args = args  # upstream's _add_beam_candidate reads the global args
        dataset = data_utils.FT_Dataset(str(data), 1, s.seq_len, s.eval_len)
        loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False)
        with contextlib.redirect_stdout(io.StringIO()):   # upstream prints per step and per hypothesis
            module.beam(net, loader, args)
        upstream = {r["id"]: r["predict"] for r in map(json.loads, (tmp_path / "up.jsonl").read_text().splitlines())}
        ours = generate(model, contexts, s, progress=False)
        assert [upstream[i] for i in range(len(contexts))] == ours, options


def test_cli_keeps_upstream_flag_names_defaults_and_types(upstream_beam):
    module = upstream_beam[0]
    ours = {action.dest: action for action in beam_mod.build_parser()._actions}
    checked = 0
    for theirs in module.parser._actions:
        if theirs.dest in ("help", "device"):  # --device: ours defaults to CUDA when present, else cpu
            continue
        mine = ours[theirs.dest]
        assert set(theirs.option_strings) <= set(mine.option_strings), theirs.dest
        assert mine.default == theirs.default and type(mine) is type(theirs), theirs.dest
        assert (mine.type or str) is (theirs.type or str), theirs.dest
        checked += 1
    assert checked == 21
