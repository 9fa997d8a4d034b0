"""``reproduce(jobs=N)``'s worker pool (:mod:`fedgrow_hf.reproduce.side_by_side`), on stand-in runs: what finished
is handed back, a failure stops what has not started and is raised. A whole comparison run side by side is
``tests/test_reproduce.py``'s ``tiny_run`` (``jobs=2``), with every run handed back."""

from __future__ import annotations

import operator
import time
from functools import partial

import pytest

from fedgrow_hf.reproduce.side_by_side import check_jobs, run_side_by_side, threads_per_job


def test_a_failed_run_stops_those_not_started_and_is_raised():
    runs = {"first": partial(dict, ok=True), "fails": partial(operator.truediv, 1, 0),
            **{f"later-{index}": partial(time.sleep, 1.0) for index in range(20)}}
    done = {}
    with pytest.raises(ZeroDivisionError):
        run_side_by_side(runs, 2, done.__setitem__)
    assert done.get("first") == {"ok": True} and "fails" not in done
    # the pool had queued a few of the later ones at most when the failure came back; each takes a second, so a
    # main process slowed by a loaded machine still sees the failure long before half of them have run
    assert len(done) < 10


def test_jobs_are_checked_and_share_the_threads():
    check_jobs(1, "ray")
    check_jobs(2, "inprocess")
    with pytest.raises(ValueError, match="at least 1"):
        check_jobs(0, "inprocess")
    with pytest.raises(ValueError, match="in-process engine"):
        check_jobs(2, "ray")
    assert threads_per_job(10_000) == 1
