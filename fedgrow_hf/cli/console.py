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
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

LOG_FILE = "fedgrow.log"


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true",
                        help=f"show what the parties and libraries print (default: only in RUN_DIR/{LOG_FILE})")


@contextmanager
def run_console(log_dir: str | Path, verbose: bool) -> Iterator[Console]:
    """The console for the progress display and the results; unless ``verbose``, everything else printed while
    the context lasts is appended to ``log_dir/LOG_FILE`` (the folder is made)."""
    from rich.console import Console  # the cli extra, imported when a command runs (``--help`` needs none)

    if verbose:
        yield Console(stderr=True)
        return
    log_path = Path(log_dir) / LOG_FILE
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(saved[2]), "w", encoding=sys.stderr.encoding or "utf-8", errors="replace")
    try:
        with open(log_path, "a", encoding="utf-8", buffering=1) as log, redirect_stdout(log), redirect_stderr(log):
            for fd in saved:
                os.dup2(log.fileno(), fd)
            try:
                yield Console(file=terminal)
            finally:
                log.flush()
                for fd, copy in saved.items():
                    os.dup2(copy, fd)
    finally:
        for copy in saved.values():
            os.close(copy)
        terminal.close()
        Console(stderr=True).print(f"[dim]what the parties and libraries printed: {log_path}[/dim]")
