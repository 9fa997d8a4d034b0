"""Resident-memory measurement shared by the benchmarks (Linux)."""

from __future__ import annotations

import resource
import threading
import time


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


class PeakRSS:
    """Highest RSS of this process while active, sampled every ``interval`` seconds.

    ``ru_maxrss`` cannot tell a later phase's peak from an earlier one; sampling can.
    """

    def __init__(self, interval: float = 0.001) -> None:
        self._interval = interval

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = current_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss_bytes())
            time.sleep(self._interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_bytes())
