"""Runs of a comparison side by side: ``reproduce(jobs=N)`` runs N federations at once, each in a process of its
own on its share of the cores.

A comparison's runs (method x seed) are independent, and one run cannot fill a machine: its kernels (a party's
Trainer step on a tiny-to-small model, one party after another on the in-process engine) keep one or two cores
busy at most. So the runs, not the kernels, are what is spread. Each worker is spawned, not forked (a fork of a
process whose OpenMP pool has run can hang in the child), builds its own parties and returns the run's summary;
the caller keeps each summary on disk as it arrives, so a kill loses only the runs in flight, which ``--resume``
continues from their checkpoints. Flower's simulation engine spreads one federation's parties over the cores
already, so only the in-process engine's runs go side by side (:func:`check_jobs`).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch

from ..federated.engine import SimulationEngine, as_engine
from ..process import exempt_imports_from_collection


def check_jobs(jobs: int, engine: str | SimulationEngine) -> None:
    """Refuse a number of jobs that cannot run (before anything is written)."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs > 1 and as_engine(engine).name != "inprocess":
        raise ValueError(f"{jobs} jobs run federations side by side on the in-process engine (--engine inprocess); "
                         "Flower's simulation engine spreads one federation's parties over the cores already")


def threads_per_job(jobs: int) -> int:
    """Each job's share of this process's threads (torch's count: the cores, or OMP_NUM_THREADS), at least one."""
    return max(1, torch.get_num_threads() // jobs)


def run_side_by_side(
    runs: Mapping[Hashable, Callable[[], dict[str, Any]]], jobs: int,
    done: Callable[[Hashable, dict[str, Any]], None],
) -> None:
    """Call every run of ``runs`` (a picklable callable: a ``functools.partial`` of a module-level function),
    ``jobs`` at once in worker processes; ``done(key, summary)`` in this process as each one finishes.

    A run that fails stops those not yet started; its error is raised once the runs in flight have ended
    (each of those is still passed to ``done``, so what they measured is kept)."""
    threads = threads_per_job(jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as workers:
        futures = {workers.submit(_alone, threads, run): key for key, run in runs.items()}
        failure = None
        for future in as_completed(futures):
            if future.cancelled():
                continue
            error = future.exception()
            if error is None:
                done(futures[future], future.result())
            elif failure is None:
                failure = error
                for other in futures:
                    other.cancel()
        if failure is not None:
            raise failure


def _alone(threads: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One run in a worker: its share of the threads, what the worker imported out of the collector's reach."""
    torch.set_num_threads(threads)
    exempt_imports_from_collection()
    return run()
