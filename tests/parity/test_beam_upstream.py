"""Beam search against upstream's own ``beam()`` (gpt2_beam.py run from the microsoft/LoRA checkout, batch 1) on
conftest's beam_model, and the CLI's flags against upstream's parser."""

from __future__ import annotations

import argparse
import contextlib
import io
import json

import pytest
import torch

from gpt2_lora import beam as beam_mod
from gpt2_lora.beam import generate
from helpers import BEAM_OPTIONS, V, beam_settings, write_contexts

pytestmark = [pytest.mark.upstream, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def upstream_beam(upstream):
    pytest.importorskip("loralib")
    module = upstream("gpt2_beam")
    # single process: gather = stack of one, no barrier
    module.distributed_gather = lambda args, tensor: tensor[None]
    module.distributed_sync = lambda args: None
    return module, upstream("model"), upstream("data_utils")


def test_matches_upstream_beam_batch_1(beam_model, beam_contexts, upstream_beam, tmp_path):
    module, upstream_model, data_utils = upstream_beam
    net = upstream_model.GPT2LMModel(upstream_model.GPT2Config(
        vocab_size_or_config_json_file=V, n_positions=64, n_ctx=64, n_embd=64, n_layer=2, n_head=4))
    net.load_weight({k[len("transformer."):]: v.clone() for k, v in beam_model.state_dict().items()})
    net.eval()
    data = tmp_path / "test.jsonl"
    write_contexts(data, beam_contexts)
    for options in (BEAM_OPTIONS[1], BEAM_OPTIONS[3], BEAM_OPTIONS[5]):
        s = beam_settings(**options, eval_len=20)
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
        ours = generate(beam_model, beam_contexts, s, progress=False)
        assert [upstream[i] for i in range(len(beam_contexts))] == ours, options


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
