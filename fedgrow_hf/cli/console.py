"""What ``fedgrow simulate`` and ``fedgrow reproduce`` show: one progress display and the results.

Everything else a run prints (the parties' ``Trainer`` metric dicts, ``datasets`` progress bars, library
warnings and logs, Ray's forwarded actor output with its prefixes, native libraries writing to the process's
file descriptors) goes to ``LOG_FILE`` in the run folder; ``--verbose`` shows it all on the console instead.
Both ``sys.stdout``/``sys.stderr`` and file descriptors 1 and 2 are redirected: Ray's forwarding thread,
handlers that libraries bound to a stream at import, child processes and native code write to the descriptors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

LOG_FILE = "fedgrow.log"


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true",
                        help=f"show what the parties and libraries print (default: only in RUN_DIR/{LOG_FILE})")


@contextmanager
def run_console(log_dir: str | Path, verbose: bool, check: Callable[[], None] = lambda: None) -> Iterator[Console]:
    """The console for the progress display and the results; unless ``verbose``, everything else printed while
    the context lasts is appended to ``log_dir/LOG_FILE``.

    ``check`` (e.g. the data check) runs first, its output captured like the rest: the folder is made only once
    it passes, so a refused run leaves nothing behind, and what it printed still reaches the log."""
    from rich.console import Console  # the cli extra, imported when a command runs (``--help`` needs none)

    if verbose:
        check()
        yield Console(stderr=True)
        return
    log_path = Path(log_dir) / LOG_FILE
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(saved[2]), "w", encoding=sys.stderr.encoding or "utf-8", errors="replace")
    logged = False
    try:
        with tempfile.TemporaryFile("w+", encoding="utf-8") as early:
            with _redirected(early, saved):
                check()
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a", encoding="utf-8", buffering=1) as log:
                logged = True
                early.seek(0)
                shutil.copyfileobj(early, log)
                with _redirected(log, saved):
                    yield Console(file=terminal)
    finally:
        for copy in saved.values():
            os.close(copy)
        terminal.close()
        if logged:
            Console(stderr=True).print(f"[dim]what the parties and libraries printed: {log_path}[/dim]")


@contextmanager
def _redirected(log: IO[str], saved: dict[int, int]) -> Iterator[None]:
    """Python's streams and file descriptors 1 and 2 into ``log`` while the context lasts; ``saved`` holds
    copies of the original descriptors, put back afterwards."""
    with redirect_stdout(log), redirect_stderr(log):
        for fd in saved:
            os.dup2(log.fileno(), fd)
        try:
            yield
        finally:
            sys.stdout.flush()
            log.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
