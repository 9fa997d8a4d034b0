"""Resident-memory measurement shared by the benchmarks (Linux).

Two figures per sample, from ``/proc/self/statm``: the resident set (RSS) and its anonymous part (RSS minus
the resident pages shared with files: memory-mapped checkpoints, libraries). A checkpoint that
``from_pretrained`` memory-maps is counted in RSS only once something reads its pages, and the kernel may drop
those clean file pages again under pressure; what a computation allocates is its anonymous memory, which does
not depend on whether the checkpoint was read before.
"""

from __future__ import annotations

import resource
import threading
import time


def current_memory_bytes() -> tuple[int, int]:
    """``(rss, anonymous rss)`` of this process."""
    with open("/proc/self/statm") as handle:
        fields = handle.read().split()
    page = resource.getpagesize()
    resident, shared = int(fields[1]) * page, int(fields[2]) * page
    return resident, resident - shared


def current_rss_bytes() -> int:
    return current_memory_bytes()[0]


class PeakRSS:
    """Highest RSS (``peak``) and anonymous RSS (``peak_anon``) of this process while active, sampled every
    ``interval`` seconds.

    ``ru_maxrss`` cannot tell a later phase's peak from an earlier one; sampling can.
    """

    def __init__(self, interval: float = 0.001) -> None:
        self._interval = interval

    def __enter__(self) -> PeakRSS:
        self.start, self.start_anon = self.peak, self.peak_anon = current_memory_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._update()
            time.sleep(self._interval)

    def _update(self) -> None:
        rss, anon = current_memory_bytes()
        self.peak, self.peak_anon = max(self.peak, rss), max(self.peak_anon, anon)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._update()
