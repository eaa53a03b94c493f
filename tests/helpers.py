"""What the tests build, in one place: paths, tiny GPT-2s (ours and transformers'), LoRA adapters, data files,
training command lines, CLI error checks, the LoRA-layer and beam-search test cases. Fixtures built from these
live in conftest.py; tests import the plain functions from here."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.util
import json
import os
import random
import re
import sys
from pathlib import Path
from typing import Iterable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt2_lora.checkpoint import describe_weights, load_checkpoint_file, lora_only_state_dict, save_weights
from gpt2_lora.data import SPLITS
from gpt2_lora.model import GPT2Config, GPT2LMModel

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GPT2_LORA_SHARED", ROOT.parent / "shared"))
SHARED_DATA = SHARED / "data"
METRICS_CASES = SHARED / "metrics-cases"
# microsoft/LoRA's examples/NLG/src, for the parity tests that run upstream's own code beside ours. Upstream code
# is never committed here: fetch microsoft/LoRA (commit c4593f06) and point GPT2_LORA_UPSTREAM at the checkout.
UPSTREAM = Path(os.environ.get("GPT2_LORA_UPSTREAM", "/tmp/up/microsoft+LoRA"))
UPSTREAM_NLG_SRC = UPSTREAM / "examples" / "NLG" / "src"


# ----------------------------------------------------------------------------------------- tiny GPT-2s
# the sizes every tiny GPT-2 here starts from; a test names only the sizes it changes
TINY = dict(vocab_size=128, n_positions=64, n_ctx=64, n_embd=32, n_layer=2, n_head=2)
# transformers' GPT2Config has no n_ctx; the HF bases of the loading / export tests have 96 tokens and 4 heads
HF_TINY = {**{k: v for k, v in TINY.items() if k != "n_ctx"}, "vocab_size": 96, "n_head": 4}
# GPT-2's own vocabulary, for the model tests that feed any GPT-2 id
REAL_VOCAB_TINY = {**HF_TINY, "vocab_size": 50257, "n_embd": 64, "n_positions": 128}


def tiny_config(**overrides) -> GPT2Config:
    """GPT2Config of TINY's sizes with ``overrides``; n_ctx follows n_positions unless given (as from_hf_config)."""
    if "n_positions" in overrides:
        overrides.setdefault("n_ctx", overrides["n_positions"])
    return GPT2Config(**{**TINY, **overrides})


def tiny_model(r: int = 4, alpha: int = 8, seed: int = 0, dropout: float = 0.0, lora_b_std: float = 0.2,
               **sizes) -> GPT2LMModel:
    """Our model from torch.manual_seed(seed), every lora_B drawn from N(0, lora_b_std) so LoRA matters."""
    torch.manual_seed(seed)
    model = GPT2LMModel(tiny_config(lora_attn_dim=r, lora_attn_alpha=alpha, lora_dropout=dropout, **sizes))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, lora_b_std)
    return model


def randomize_lora(model: nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Every LoRA A and B of ``model`` (ours or upstream's) replaced by N(0, std) draws of its own generator."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * std)


def ids(vocab_size: int = HF_TINY["vocab_size"], shape=(3, 12), seed: int = 2) -> torch.Tensor:
    return torch.randint(0, vocab_size, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def our_logits(model: GPT2LMModel, tokens: torch.Tensor) -> torch.Tensor:
    return model.float()(tokens)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ------------------------------------------------------------------------------ HF bases and adapters
def hf_gpt2(seed: int = 0, **sizes):
    """A random transformers GPT2LMHeadModel of HF_TINY's sizes with ``sizes`` (no dropout; biases and LayerNorms
    perturbed so they matter), in eval mode."""
    import transformers

    sizes = {**HF_TINY, **sizes}
    torch.manual_seed(seed)
    config = transformers.GPT2Config(**sizes, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                     bos_token_id=sizes["vocab_size"] - 1, eos_token_id=sizes["vocab_size"] - 1)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def hf_base(path: Path, seed: int = 0, **sizes) -> Path:
    """hf_gpt2(seed, **sizes) saved with save_pretrained into ``path``."""
    hf_gpt2(seed, **sizes).save_pretrained(path)
    return path


def lora_model(base_dir: Path, r: int = 2, alpha: int = 8, slices: str = "qv", seed: int = 1,
               std: float = 0.3) -> GPT2LMModel:
    """Our model over ``base_dir`` with random LoRA A and B (unmerged, eval mode)."""
    config = GPT2Config.from_hf_config(base_dir, lora_attn_dim=r, lora_attn_alpha=alpha, lora_attn_slices=slices)
    model = GPT2LMModel(config)
    model.load_weight(load_checkpoint_file(base_dir))
    randomize_lora(model, seed, std)
    return model.eval()


def save_adapter(model: GPT2LMModel, path: Path, base: Path | None, metadata: bool = True) -> Path:
    """The model's LoRA weights as training writes them (with its description unless ``metadata`` is False)."""
    meta = describe_weights(model.config, lora_dropout=0.0, model_card=None, base_checkpoint=base) if metadata else None
    return save_weights(lora_only_state_dict(model), path, meta)


# ------------------------------------------------------------------------------------------ data files
PREPARED_FILES = sorted(f"{split}{suffix}.jsonl" for split in SPLITS for suffix in ("_formatted", ""))  # per task


def write_text(path: Path, text: str | bytes, encoding: str = "utf-8") -> Path:
    """``text`` as these bytes (no newline translation); the folder is made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode(encoding))
    return path


def write_jsonl(path: Path, records: Iterable[dict]) -> Path:
    return write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def write_encoded(path: Path, examples: Iterable[tuple[list[int], list[int]]]) -> Path:
    """An encoded jsonl (what prepare writes and train / beam read): one {"context", "completion"} per example."""
    return write_jsonl(path, ({"context": c, "completion": x} for c, x in examples))


# ------------------------------------------------------------------------------------------- training
def random_pairs(n: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """(context, completion) id lists of random lengths (0-12 and 0-15 ids, then <|endoftext|>)."""
    rng = random.Random(seed)
    return [([rng.randint(1, 999) for _ in range(rng.randint(0, 12))] + [50256],
             [rng.randint(1, 999) for _ in range(rng.randint(0, 15))] + [50256]) for _ in range(n)]


def copy_task(n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """Context: 2-4 tokens + "eos" 127; completion: each token + 60, then 127 (easy to over-fit)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        c = [rng.randint(2, 12) for _ in range(rng.randint(2, 4))]
        out.append((c + [127], [t + 60 for t in c] + [127]))
    return out


def write_copy_task(folder: Path, n_train: int = 16, n_valid: int = 8) -> Path:
    """train.jsonl and valid.jsonl of the copy task, and TINY's config.json, in ``folder``."""
    write_encoded(folder / "train.jsonl", copy_task(n_train, 0))
    write_encoded(folder / "valid.jsonl", copy_task(n_valid, 1))
    write_text(folder / "config.json", json.dumps(TINY))
    return folder


def base_args(files: Path, work_dir: Path, *extra) -> list[str]:
    """A train command line for the copy task in ``files`` on the CPU."""
    return ["--train_data", str(files / "train.jsonl"), "--valid_data", str(files / "valid.jsonl"),
            "--model_card", str(files / "config.json"), "--seq_len", "32", "--work_dir", str(work_dir),
            "--device", "cpu", "--log_interval", "2", "--random_seed", "3", *extra]


def run_cli(argv, capsys) -> tuple[int, list[str]]:
    """Exit code and stderr lines of a train command that fails."""
    from gpt2_lora.train import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return exit_info.value.code, err


def log_records(work_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (work_dir / "log.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------------- CLIs
def one_line_error(main, argv, capsys, message: str) -> None:
    """``main(argv)`` exits 2 with a single `error: ...` line holding ``message``."""
    with pytest.raises(SystemExit) as err:
        main(argv)
    text = capsys.readouterr().err.strip()
    assert err.value.code == 2 and text.startswith("error: ") and "\n" not in text and message in text, text


def eval_script(name: str):
    """eval/<name>.py as a module, loaded afresh (eval/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"eval_{name}", ROOT / "eval" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------- LoRA layers (ours beside loralib's)
def random_state(module: nn.Module, seed: int) -> dict:
    """A state dict with every entry random (lora_B too, so the LoRA path matters)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=gen, dtype=v.dtype) * 0.5 if v.is_floating_point() else v)
            for k, v in module.state_dict().items()}


def float64_input(*shape, seed=1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def composite(lib) -> nn.Module:
    """A small net of every layer kind of ``lib`` (gpt2_lora.lora or loralib), seeded."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = lib.Embedding(10, 8, r=2)
            self.c_attn = lib.MergedLinear(8, 24, r=2, enable_lora=[True, False, True], fan_in_fan_out=True)
            self.c_proj = lib.Linear(24, 8, r=2, bias=True)
            self.frozen_lora = lib.Linear(8, 8, r=0)
            self.mlp = nn.Linear(8, 8)
            self.ln_f = nn.LayerNorm(8)
            self.conv = lib.Conv2d(1, 2, 3, r=2, padding=1)
            self.register_buffer("bias", torch.ones(3))  # upstream GPT-2 has an attention buffer called bias

        def forward(self, ids):
            h = self.wte(ids)
            h = self.ln_f(self.mlp(self.frozen_lora(self.c_proj(self.c_attn(h)))))
            return h + self.conv(h.unsqueeze(1)).mean(1)

    torch.manual_seed(0)
    return Net()


NET_IDS = torch.tensor([[1, 2, 3], [4, 5, 6]])


def outputs(model: nn.Module, tokens: torch.Tensor, training: bool) -> torch.Tensor:
    model.train(training)
    with torch.no_grad():
        return model(tokens)


def same_weights(first_lib, second_lib, seed: int):
    """Two composite models (of these libraries) loaded with one random state dict, and that dict."""
    first, second = composite(first_lib), composite(second_lib)
    state = random_state(first, seed)
    first.load_state_dict(state)
    second.load_state_dict(state)
    return first, second, state


# ------------------------------------------------------------------------ the beam-search test case
# A tiny GPT-2 trained on repetitive sequences, so searches meet EOS at many lengths, unfinished beams and
# repeated n-grams.
V, SEP, EOS_A, EOS_B = 64, 1, 62, 63
PATTERN_SIZES = dict(vocab_size=V, n_positions=64, n_embd=64, n_layer=2, n_head=4)  # also the CLIs' config.json


def pattern_config(**overrides) -> GPT2Config:
    return tiny_config(**PATTERN_SIZES, **overrides)


def pattern_sample(rng: random.Random) -> tuple[list[int], list[int]]:
    """context + [SEP] -> a period-2/3 pattern of context tokens, then EOS_A or EOS_B."""
    ctx = [rng.randrange(2, 40) for _ in range(rng.randint(2, 9))]
    period = [ctx[0], ctx[-1], rng.randrange(40, 60)] if len(ctx) % 2 else [ctx[0], ctx[-1]]
    completion = (period * 8)[: 2 * len(ctx) + rng.randint(0, 2)]
    return ctx + [SEP], completion + [EOS_A if ctx[0] % 3 else EOS_B]


def pattern_model() -> GPT2LMModel:
    """The model, after 100 Adam steps on one thread (the CI box's 2 cores are shared by many jobs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        rng = random.Random(0)
        net = GPT2LMModel(pattern_config())
        opt = torch.optim.Adam(net.parameters(), lr=6e-3)
        for _ in range(100):
            batch = [pattern_sample(rng) for _ in range(16)]
            T = max(len(c) + len(x) for c, x in batch)
            tokens = torch.zeros(len(batch), T, dtype=torch.long)
            target = torch.full((len(batch), T), -100)
            for i, (c, x) in enumerate(batch):
                tokens[i, :len(c) + len(x)] = torch.tensor(c + x)
                target[i, len(c) - 1:len(c) + len(x) - 1] = torch.tensor(x)
            loss = F.cross_entropy(net(tokens).view(-1, V), target.view(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def pattern_contexts() -> list[list[int]]:
    rng = random.Random(5)
    ctxs = [pattern_sample(rng)[0] for _ in range(12)]
    # longer than seq_len - eval_len (12 below): upstream keeps the last tokens
    ctxs += [[rng.randrange(2, 40) for _ in range(n)] + [SEP] for n in (13, 17, 22)]
    return ctxs


BEAM_OPTIONS = [
    dict(beam=1, length_penalty=1.0, no_repeat_ngram_size=0, eos_token_id=(EOS_A, EOS_B)),
    dict(beam=3, length_penalty=0.8, no_repeat_ngram_size=2, repetition_penalty=1.3, min_length=3,
         eos_token_id=(EOS_A, EOS_B)),
    dict(beam=5, length_penalty=1.0, no_repeat_ngram_size=3, eos_token_id=(EOS_A,)),
    dict(beam=5, length_penalty=-0.5, no_repeat_ngram_size=0, eos_token_id=(50256, EOS_A, EOS_B)),
    dict(beam=3, length_penalty=0.0, no_repeat_ngram_size=1, repetition_penalty=0.7, eos_token_id=(EOS_B,)),
    dict(beam=4, length_penalty=2.0, no_repeat_ngram_size=4, min_length=6, eos_token_id=(EOS_A, EOS_B)),
    dict(beam=5, length_penalty=-0.1, no_repeat_ngram_size=2, eos_token_id=(EOS_A, EOS_B)),
]


def write_contexts(path: Path, contexts: Iterable[list[int]]) -> Path:
    """Contexts as the encoded jsonl beam reads (it never reads the completion)."""
    return write_encoded(path, ((c, [5, EOS_A]) for c in contexts))


def beam_settings(**kw):
    """BeamSettings of the pattern case: eval_len 24 and seq_len 36 unless given."""
    from gpt2_lora.beam import BeamSettings

    return BeamSettings(eval_len=kw.pop("eval_len", 24), seq_len=kw.pop("seq_len", 36), **kw)


# ------------------------------------------------------------------ the pipeline: seeds, epochs, paper, own data
# A 2-layer, 32-wide random GPT-2 base, a synthetic E2E-style set, a tiny DART set, a tiny CSV of own rows, and
# helpers that run the pipeline in this process with one short decoding (16 tokens) and tell which stages ran.
TINY_MODEL = {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 512, "vocab_size": 50257}


def build_tiny(root: Path, vocab_dir: Path) -> Path:
    """root/tiny.json, root/base.pt (random weights), root/data/{gpt2 -> vocab, e2e/ (encoded), dart/ (JSON)}."""
    from gpt2_lora import prepare
    from gpt2_lora.model import GPT2Config, GPT2LMModel

    data = root / "data"
    prepare.prepare_synthetic(data / "e2e", {"train": 48, "valid": 8, "test": 2}, vocab=vocab_dir)
    for source in (data / "e2e").glob("*.txt"):
        source.unlink()  # encoded data only: the prepare stage just checks it
    (data / "gpt2").symlink_to(vocab_dir, target_is_directory=True)
    write_dart(data / "dart", {"train": 24, "dev": 4, "test": 2})
    (root / "tiny.json").write_text(json.dumps(TINY_MODEL))
    torch.manual_seed(0)
    torch.save(GPT2LMModel(GPT2Config.resolve(str(root / "tiny.json"))).state_dict(), root / "base.pt")
    return root


def write_dart(folder: Path, sizes: dict[str, int]) -> None:
    """DART v1.1.1-shaped JSON files: two triples per entry, one or two annotations."""
    names = ["Alpha Bank", "Blue Hill", "Cedar Park", "Delta Mill", "Echo Bay", "Fir Lane", "Gold Gate"]
    cities = ["Paris", "Oslo", "Rome", "Lima"]
    folder.mkdir(parents=True)
    for split, n in sizes.items():
        entries = []
        for i in range(n):
            name, city = names[i % len(names)], cities[i % len(cities)]
            texts = [f"{name} is a hotel in {city} .", f"The hotel {name} is in {city} ."][:1 + i % 2]
            entries.append({"tripleset": [[name, "LOCATION", city], [name, "TYPE", "hotel"]],
                            "annotations": [{"source": "webnlg", "text": t} for t in texts]})
        (folder / f"dart-v1.1.1-full-{split}.json").write_text(json.dumps(entries))


def write_rows_csv(path: Path, n_contexts: int = 30) -> list[dict]:
    """Your own rows: a product's attributes and its descriptions (every other context has two)."""
    rows = []
    for i in range(n_contexts):
        item, color, size = ["shirt", "lamp", "chair", "mug", "bag"][i % 5], ["red", "blue", "green"][i % 3], \
            ["small", "large"][i % 2]
        context = f"item : {item} {i} | color : {color} | size : {size}"
        texts = [f"A {size} {color} {item} .", f"This {item} is {color} and {size} ."][:1 + i % 2]
        rows += [{"attributes": context, "description": t} for t in texts]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["attributes", "description"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def model_options(tiny: Path, work: Path) -> list[str]:
    return ["--model_card", str(tiny / "tiny.json"), "--init_checkpoint", str(tiny / "base.pt"), "--work_dir",
            str(work), "--device", "cpu"]


def short_decoding(config):
    """The recipe's headline decoding alone, 16 tokens: each run beams once and briefly."""
    short = dataclasses.replace(config.recipe.headline, eval_len=16)
    return dataclasses.replace(config, recipe=dataclasses.replace(config.recipe, decodes=(short,)))


def sections(output: str) -> dict[str, str]:
    """Stage header -> what that stage printed (a header seen twice keeps both texts)."""
    parts = re.split(r"^=== (.+) ===$", output, flags=re.M)
    found: dict[str, str] = {}
    for title, text in zip(parts[1::2], parts[2::2]):
        found[title] = found.get(title, "") + text
    return found


def ran(parts: dict[str, str]) -> set[str]:
    """The stages that ran a command (each call is echoed as '+ ...')."""
    return {name for name, text in parts.items() if any(line.startswith("+ ") for line in text.splitlines())}


@contextlib.contextmanager
def echoed_commands():
    """stderr into stdout, so that the echoed commands stay in their stages' sections."""
    with contextlib.redirect_stderr(sys.stdout):
        yield


def run_pipeline(argv: list[str], capsys) -> dict[str, str]:
    """``python -m gpt2_lora.pipeline TASK ...`` in this process with one short decoding; its sections."""
    from gpt2_lora import pipeline as pl

    config = short_decoding(pl.parse_args(argv))
    with echoed_commands():
        pl.print_summary(config, pl.run(config))
    return sections(capsys.readouterr().out)
