"""Up-to-date stamps: when a step whose outputs already exist may be skipped.

A step records what it was run with (any JSON value: a command, options, the sources' sizes) in a stamp
file once its outputs are complete. It is up to date when that record equals what it would be run with
now, every output exists, and no input is newer than any output. ``gpt2_lora.prepare`` keeps one stamp
in its output folder; ``gpt2_lora.pipeline`` keeps one per stage in ``<work dir>/.stamps``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from .fileio import atomic_write


def read(path: str | os.PathLike):
    """The recorded value, or None when the stamp is missing or unreadable (then nothing is up to date)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write(path: str | os.PathLike, value) -> None:
    with atomic_write(path) as handle:
        json.dump(value, handle, indent=1)
        handle.write("\n")


def clear(path: str | os.PathLike) -> None:
    """Remove a stamp before its step rewrites the outputs, so an interrupted step never looks finished."""
    Path(path).unlink(missing_ok=True)


def file_record(path: str | os.PathLike) -> dict:
    """What a stamp keeps of a source file: where it is, its size and its modification time."""
    path = Path(path)
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def newer_inputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike]) -> bool:
    """True when an output is missing or some input is newer than the oldest output."""
    try:
        oldest_output = min((Path(p).stat().st_mtime_ns for p in outputs), default=None)
    except OSError:
        return True
    if oldest_output is None:
        return False
    newest_input = max((Path(p).stat().st_mtime_ns for p in inputs if Path(p).exists()), default=None)
    return newest_input is not None and newest_input > oldest_output


def up_to_date(path: str | os.PathLike, value, outputs: Iterable[str | os.PathLike],
               inputs: Iterable[str | os.PathLike] = ()) -> bool:
    """The stamp at ``path`` holds ``value``, and every output exists and is at least as new as every input."""
    saved = read(path)
    return saved is not None and saved == value and not newer_inputs(list(outputs), list(inputs))


class StampDir:
    """The stamps of one work dir, one file per stage name (``<dir>/<name>.json``)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def read(self, name: str):
        return read(self.path(name))

    def write(self, name: str, value) -> None:
        write(self.path(name), value)

    def clear(self, *names: str) -> None:
        for name in names:
            clear(self.path(name))

    def up_to_date(self, name: str, value, outputs, inputs=()) -> bool:
        return up_to_date(self.path(name), value, outputs, inputs)
