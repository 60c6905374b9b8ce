"""Files that are never seen half-written: the one implementation of write-then-rename.

- :func:`atomic_write` replaces one file: a temporary file in the same folder (so the rename stays on one
  file system), written, flushed to disk, given its mode, then renamed over the target.
- :func:`staged_folder` builds several files in a temporary folder beside the target folder and moves them
  in only when all were written; on any error the target is left as it was and the stage is removed.

Both raise OSError; callers translate it into their own package's error with the path in the message.
:func:`check_output` is what a command calls first, before any long work: it raises OutputError (a one-line
message naming the path and the reason) when `--out` could not be written later.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeoff.errors import OutputError

__all__ = ["atomic_write", "check_output", "staged_folder"]

FILE_MODE = 0o644  # results, tables and health files: readable by other users (a probe, a reviewer)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, mode: int = FILE_MODE) -> None:
    """Replace `path` with `data` (str is written as UTF-8) atomically, with permissions `mode`.

    The temporary file is created with mode 0600 and changed to `mode` before the rename, so a secret
    (mode 0600) is never readable by others, not even briefly.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged_folder(out: str | os.PathLike[str], *, mode: int = 0o755) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; on success move every file in it into `out`.

    `out` is created when missing (with `mode`); files already in `out` that the stage does not hold are
    kept. Nothing is moved when the body raises.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield stage
        if out.is_dir():
            for item in stage.iterdir():
                os.replace(item, out / item.name)
        else:
            os.chmod(stage, mode)
            os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def check_output(path: str | os.PathLike[str], *, folder: bool) -> None:
    """Raise OutputError unless `path` can be written later: as a folder of files (`folder`, written with
    :func:`staged_folder`) or as one file (written with :func:`atomic_write`).

    Refused: a folder path that is an existing file, a file path that is an existing folder, a path under a
    file, and a place where nothing can be created (checked by creating and removing an empty folder there,
    which also holds for root and for read-only file systems). Nothing is left behind.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder")
    if not folder and path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{path}: {ancestor} is a file, not a folder")
    for where in (ancestor, path) if folder and path.is_dir() else (ancestor,):
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".edgeoff-probe-", dir=where))
        except OSError as exc:
            raise OutputError(f"{path}: cannot write in {where}: {exc.strerror or exc}") from None
