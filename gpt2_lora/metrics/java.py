"""Find the Java runtime and the official jars (from the ``pycocoevalcap==1.2`` wheel), checked by sha256.

The jars are the real scorer components (METEOR 1.5, Stanford CoreNLP 3.4.1's PTBTokenizer); everything
else is ported to Python. We pin their sha256 so that a different build can never slip in unnoticed.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
from pathlib import Path

from ..errors import UserError
from ..fileio import file_sha256

# name -> (path inside the pycocoevalcap package, sha256 of the file in the pycocoevalcap==1.2 wheel)
JARS = {
    # the coco-caption build of METEOR 1.5 (its -stdio EVAL takes many stats at once), run by e2e-metrics
    "meteor_coco": ("meteor/meteor-1.5.jar",
                    "1e57b4c72c0830ebe68558f1c799a624e96cbc1b6045c9f6330e26dcff6eafc2"),
    # the English paraphrase table both METEOR builds use
    "paraphrase_en": ("meteor/data/paraphrase-en.gz",
                      "c147ac7d2c91f2fbb3ad31e4b352235061eb83145e0434daf217ee9ca5975f48"),
    # the stock METEOR 1.5 release jar, which GenerationEval runs on files
    "meteor_stock": ("spice/lib/Meteor-1.5.jar",
                     "014a3627d277a6f4ba5b44a20733f8dff28bbb428204c36abfda56565658ba09"),
    # Stanford CoreNLP 3.4.1, for coco-caption's PTBTokenizer
    "corenlp": ("tokenizer/stanford-corenlp-3.4.1.jar",
                "2fcb91bb7a111f93d71e264f4ee0e3afd19ba0dde6d21b38605088df9e940399"),
}


class JavaUnavailable(UserError):
    """Java or one of the official jars is missing (or not the pinned build)."""


def find_java() -> str | None:
    """Path of the ``java`` executable: $JAVA_HOME/bin/java if set, else the first one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


def java_available() -> bool:
    """True when a ``java`` executable can be found (the jars are checked separately)."""
    return find_java() is not None


def require_java() -> str:
    java = find_java()
    if java is None:
        raise JavaUnavailable("no Java runtime found (install one, e.g. Debian's default-jre-headless, "
                              "or set JAVA_HOME)")
    return java


def _package_dirs() -> list[Path]:
    # pycocoevalcap 1.2 is a namespace package (no __init__.py), so look at every search location.
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)  # cached per (size, mtime): a changed file is hashed again


def jar_path(name: str, verify: bool = True) -> Path:
    """Path of one of the JARS files; raises JavaUnavailable if it is missing or its sha256 differs."""
    relative, expected = JARS[name]
    for base in _package_dirs():
        path = base / relative
        if path.is_file():
            break
    else:
        raise JavaUnavailable(f"{relative} not found: install the PyPI wheel pycocoevalcap==1.2 "
                              "(pip install pycocoevalcap==1.2)")
    if verify:
        stat = path.stat()
        actual = _sha256(str(path), stat.st_size, stat.st_mtime_ns)
        if actual != expected:
            raise JavaUnavailable(f"{path}: sha256 {actual[:12]}… is not the pycocoevalcap==1.2 build "
                                  f"({expected[:12]}…); reinstall pycocoevalcap==1.2")
    return path
