"""Small file helpers shared by every stage: atomic writes (files and folders) and strict UTF-8 line reading."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from .errors import UserError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file next to ``path``; rename it over ``path`` only if the block finishes.

    An exception (or Ctrl-C) inside the block leaves any existing ``path`` untouched and removes the
    temp file, so no half-written output is ever left behind.
    """
    with atomic_files([path], mode, encoding) as (handle,):
        yield handle


@contextlib.contextmanager
def atomic_files(paths: list[str | os.PathLike], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[list[IO]]:
    """``atomic_write`` for files that belong together: every one is renamed into place only after all
    of them are written, so a failure never leaves a new file beside an old one."""
    paths = [Path(p) for p in paths]
    check_outputs({f"output {i + 1} ({p})": p for i, p in enumerate(paths)})
    binary = "b" in mode
    temps: list[str] = []
    handles: list[IO] = []
    try:
        for path in paths:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            except OSError as err:
                raise UserError(f"cannot write {path}: {err.strerror}") from None
            temps.append(tmp)
            handles.append(os.fdopen(fd, mode, encoding=None if binary else encoding,
                                     newline=None if binary else ""))
        yield handles
        for handle in handles:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        _replace_all(temps, paths)
    except BaseException:
        for handle in handles:
            with contextlib.suppress(OSError):
                handle.close()
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def _replace_all(temps: list[str], paths: list[Path]) -> None:
    """Rename each temp file over its path. The old files are kept as hard links until all renames have
    succeeded, and put back if one fails (where the file system has no hard links, they are not kept)."""
    backups: list[tuple[str, Path]] = []
    done: list[Path] = []
    try:
        for tmp, path in zip(temps, paths):
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
            if path.is_file() and len(paths) > 1:
                backup = f"{tmp}.old"
                with contextlib.suppress(OSError):
                    os.link(path, backup)
                    backups.append((backup, path))
            os.replace(tmp, path)
            done.append(path)
    except OSError as err:
        restorable = {path: backup for backup, path in backups}
        for path in done:
            if path in restorable:
                os.replace(restorable.pop(path), path)
        for backup in restorable.values():
            with contextlib.suppress(OSError):
                os.unlink(backup)
        raise UserError(f"cannot write {paths[len(done)]}: {err.strerror} (the other outputs are unchanged)") from None
    for backup, _ in backups:
        with contextlib.suppress(OSError):
            os.unlink(backup)


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_outputs(outputs: dict[str, str | os.PathLike], inputs: dict[str, str | os.PathLike] | None = None) -> None:
    """Refuse, before any work, output paths that would fail or destroy data: an existing directory, a
    path below a file, the same file as an input, or two outputs that are one file. Keys name the flags."""
    try:
        _check_outputs(outputs, inputs)
    except OSError as err:  # e.g. a folder on the way that cannot be searched
        raise UserError(f"cannot check the output paths: {err.strerror}: {err.filename}") from None


def _check_outputs(outputs, inputs) -> None:
    seen: list[tuple[str, Path]] = []
    for flag, value in outputs.items():
        path = Path(value)
        if str(value) == "" or path.is_dir():
            raise UserError(f"{flag} {value}: is a directory, not a file name")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise UserError(f"{flag} {path}: {parent} is a file, not a folder")
                break
        for in_flag, in_value in (inputs or {}).items():
            if in_value is not None and _same_file(path, Path(in_value)):
                raise UserError(f"{flag} {path} is the {in_flag} file: writing it would destroy the input")
        for other_flag, other in seen:
            if _same_file(path, other):
                raise UserError(f"{flag} and {other_flag} are the same file ({path})")
        seen.append((flag, path))


def file_sha256(path: str | os.PathLike) -> str | None:
    """The file's SHA-256 (None when it does not exist: the caller reports that)."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Return ``path`` as a Path, or raise a one-line UserError if it is not an existing file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path}: is a directory, not a file")
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    return path


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A UTF-8 text file's contents; a missing file or a bad byte is a one-line UserError naming it."""
    path = require_file(path, what)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = data.count(b"\n", 0, err.start) + 1
        raise UserError(f"{path}:{line_no}: not valid UTF-8 ({err.reason} at byte {err.start})") from None


def read_lines(path: str | os.PathLike, what: str = "file") -> list[str]:
    """Read a UTF-8 text file as lines without their '\\n'; a bad byte names file and line."""
    text = read_text(path, what)
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n") if text else []


def check_output_folder(path: str | os.PathLike, overwrite: bool = False, flag: str = "--out",
                        inputs: dict[str, str | os.PathLike | None] | None = None) -> None:
    """``atomic_folder``'s checks, to run before any work: a non-empty folder needs ``overwrite``; the folder
    may not be, or hold, an input."""
    path = Path(path)
    if path.resolve() == Path.cwd().resolve():  # '', '.' (which cannot be renamed) or the folder one works in
        raise UserError(f"{flag} {path}: is the current folder; name the folder to write")
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise UserError(f"{flag} {path}: exists and is not a folder")
        if not overwrite and any(path.iterdir()):
            raise UserError(f"{flag} {path}: exists and is not empty (pass --overwrite to replace it)")
    for in_flag, value in (inputs or {}).items():
        where = None if value is None else Path(value).resolve()
        if where is not None and (where == path.resolve() or path.resolve() in where.parents):
            raise UserError(f"{flag} {path} holds the {in_flag} input {value}: writing it would destroy the input")


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, overwrite: bool = False, flag: str = "--out",
                  inputs: dict[str, str | os.PathLike | None] | None = None) -> Iterator[Path]:
    """A folder written whole or not at all: the block fills a temp folder beside ``path``, which is renamed
    into place when the block finishes (an error removes it). An existing non-empty ``path`` is refused unless
    ``overwrite``, and then replaced only once the new folder is complete (a symlink is replaced, not its
    target). ``path`` may not be, or hold, any of ``inputs`` (flag -> path)."""
    path = Path(path)
    check_output_folder(path, overwrite, flag, inputs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from None
    old = Path(f"{temp}.old")
    try:
        yield temp
        os.chmod(temp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; give the folder the usual permissions
        if path.exists() or path.is_symlink():
            os.replace(path, old)
        os.replace(temp, path)
    except BaseException as err:
        shutil.rmtree(temp, ignore_errors=True)
        if (old.exists() or old.is_symlink()) and not path.exists():
            os.replace(old, path)  # the rename of the new folder failed: put the old one back
        if isinstance(err, OSError):
            raise UserError(f"cannot write {path}: {err.strerror} (left unchanged)") from None
        raise
    if old.is_symlink() or old.is_file():
        old.unlink()
    elif old.exists():
        shutil.rmtree(old, ignore_errors=True)
