"""What the pipeline tests of seeds, epochs, the paper command and your own data share: a 2-layer, 32-wide random
GPT-2 as the base, a synthetic E2E-style set (encoded layers only), a tiny DART set (source JSON, prepared by
the pipeline), a tiny CSV of your own rows, and the helpers that run the pipeline in this process with one
short decoding (16 tokens) and tell which stages ran."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import re
import sys
from pathlib import Path

import torch

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
