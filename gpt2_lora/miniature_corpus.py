"""The pretraining corpus of the miniature experiment: data-to-text text other than E2E.

Training text: the WebNLG 2017 training set and the DART training set, each example formatted and
encoded exactly as ``gpt2_lora.prepare`` does it (linearised triples, then the text). Two kinds of
DART annotation are left out:

* every annotation whose ``source`` is ``e2e``: E2E is the held-out task, so the base must never see
  its restaurant texts or MRs;
* every ``webnlg``-sourced annotation whose text is also a text of the WebNLG 2017 *test* set (compared
  after undoing DART's HTML escapes and collapsing whitespace), so the WebNLG scores of the experiment
  do not reward memorised test sentences.

Validation text: the WebNLG 2017 dev set and DART's dev set under the same two rules, thinned evenly to
at most ``valid_max`` examples (validation runs several times during pretraining).
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from . import data
from .errors import UserError
from .fileio import atomic_files, atomic_write

STATS_FILE = "stats.json"  # written last: a corpus folder holding it is complete


@dataclass(frozen=True)
class CorpusStats:
    """What went into the corpus, and what was left out (all counts are examples = annotations)."""

    webnlg_train: int
    dart_train: int
    dart_e2e_dropped: int
    dart_webnlg: int
    dart_webnlg_test_overlap_dropped: int
    train_examples: int
    train_tokens: int
    valid_examples: int


def normalise_text(text: str) -> str:
    """DART writes WebNLG's texts with HTML escapes (``&amp;``) and sometimes other spacing."""
    return " ".join(html.unescape(text).split())


def dart_sources(path: str | os.PathLike) -> list[str]:
    """The ``source`` of every annotation of a DART file, in ``data.read_dart``'s example order."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: cannot read DART JSON ({err})") from None
    sources = []
    for i, entry in enumerate(entries):
        for j, annotation in enumerate(entry.get("annotations", [])):
            source = annotation.get("source") if isinstance(annotation, dict) else None
            if not isinstance(source, str):
                raise UserError(f"{path}: [{i}].annotations[{j}]: no 'source' (DART marks each annotation's "
                                f"source; the corpus needs it to leave E2E out)")
            sources.append(source)
    return sources


def filter_dart(path: str | os.PathLike, webnlg_test_texts: set[str]) -> tuple[list[data.Example], dict[str, int]]:
    """DART examples without E2E-sourced ones and without WebNLG test texts; the counts of each."""
    examples = data.read_dart(path)
    sources = dart_sources(path)
    if len(sources) != len(examples):  # read_dart validated the file; the two walks must agree
        raise UserError(f"{path}: {len(sources)} annotation sources for {len(examples)} examples")
    kept, counts = [], {"total": len(examples), "e2e": 0, "webnlg": 0, "webnlg_test_overlap": 0}
    for example, source in zip(examples, sources):
        if source == "e2e":
            counts["e2e"] += 1
            continue
        if source == "webnlg":
            counts["webnlg"] += 1
            if normalise_text(example.completion) in webnlg_test_texts:
                counts["webnlg_test_overlap"] += 1
                continue
        kept.append(example)
    return kept, counts


def thin(examples: list, limit: int) -> list:
    """At most ``limit`` examples, evenly spaced (deterministic, keeps every source represented)."""
    if len(examples) <= limit:
        return examples
    return [examples[i * len(examples) // limit] for i in range(limit)]


def collect(data_dir: str | os.PathLike, valid_max: int) -> tuple[list[data.Example], list[data.Example], dict]:
    """(train, valid, counts) from the WebNLG 2017 and DART source files under ``data_dir``."""
    webnlg = data.source_paths("webnlg", data_dir)
    dart = data.source_paths("dart", data_dir)
    test_texts = {normalise_text(e.completion) for e in data.read_webnlg(webnlg["test"])}
    webnlg_train = [e._replace(cate=None) for e in data.read_webnlg(webnlg["train"])]
    dart_train, counts = filter_dart(dart["train"], test_texts)
    webnlg_valid = [e._replace(cate=None) for e in data.read_webnlg(webnlg["valid"])]
    dart_valid, _ = filter_dart(dart["valid"], test_texts)
    counts["webnlg_train"] = len(webnlg_train)
    return webnlg_train + dart_train, thin(webnlg_valid + dart_valid, valid_max), counts


def build_corpus(data_dir: str | os.PathLike, out: str | os.PathLike, vocab: str | os.PathLike | None = None,
                 valid_max: int = 2000) -> CorpusStats:
    """Write ``out/train.jsonl``, ``out/valid.jsonl`` (encoded) and ``out/stats.json``; reuse a finished one."""
    out = Path(out)
    if (out / STATS_FILE).is_file():
        return CorpusStats(**json.loads((out / STATS_FILE).read_text(encoding="utf-8")))
    train, valid, counts = collect(data_dir, valid_max)
    from .tokenizer import Tokenizer

    tokenizer = Tokenizer(vocab)
    encoded = {name: data.encode_examples(items, tokenizer, desc=f"corpus {name}")
               for name, items in (("train", train), ("valid", valid))}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_files([out / "train.jsonl", out / "valid.jsonl"]) as (train_file, valid_file):
        train_file.write("".join(data.encoded_line(c, x) for c, x in encoded["train"]))
        valid_file.write("".join(data.encoded_line(c, x) for c, x in encoded["valid"]))
    stats = CorpusStats(webnlg_train=counts["webnlg_train"], dart_train=counts["total"],
                        dart_e2e_dropped=counts["e2e"], dart_webnlg=counts["webnlg"],
                        dart_webnlg_test_overlap_dropped=counts["webnlg_test_overlap"],
                        train_examples=len(train), train_tokens=sum(len(c) + len(x) for c, x in encoded["train"]),
                        valid_examples=len(valid))
    with atomic_write(out / STATS_FILE) as handle:
        json.dump(asdict(stats), handle, indent=1)
    return stats
