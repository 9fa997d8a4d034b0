"""Writes that fail say which file and why: ``torch.save`` on a full disk reports only
``[enforce fail at inline_container.cc:672] . unexpected pos ...``, naming neither the file nor the cause.

:func:`writing` wraps one file's write and turns any ``OSError`` or ``RuntimeError`` of it into
:class:`WriteFailed`, naming the file and, when its disk has (almost) no room left, saying so.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# Below this many free bytes a failed write is reported as a full disk.
NEARLY_FULL = 16 * 1024 * 1024


class WriteFailed(OSError):
    """Writing a file failed; the message names the file and the cause (a full disk where it is one)."""

    def __str__(self) -> str:  # the message alone: it already names the file (OSError would add both again)
        return str(self.strerror)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Run the block that writes ``path``; its failure becomes :class:`WriteFailed` naming ``path``."""
    try:
        yield
    except WriteFailed:
        raise
    except (OSError, RuntimeError) as error:
        raise WriteFailed(errno.ENOSPC if _full(path, error) else getattr(error, "errno", None) or errno.EIO,
                          _reason(path, error), str(path)) from error


def durable_write(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)``, then fsync it, rename it to ``path`` and fsync the directory: ``path`` is either its
    previous content or the whole new one, whenever the process or the machine stops."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with writing(path):
            write(tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
    except WriteFailed:
        tmp.unlink(missing_ok=True)  # the previous file stays whole
        raise
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _full(path: Path, error: BaseException) -> bool:
    if getattr(error, "errno", None) == errno.ENOSPC:
        return True
    try:
        return shutil.disk_usage(path.parent).free < NEARLY_FULL
    except OSError:
        return False


def _reason(path: Path, error: BaseException) -> str:
    if _full(path, error):
        return f"cannot write {path}: no space left on its disk"
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"cannot write {path}: {first_line}"
