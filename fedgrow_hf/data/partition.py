"""Splitting one dataset among federated parties: IID, or label-skewed with a Dirichlet prior.

The Dirichlet scheme is the standard one of Hsu et al. 2019 ("Measuring the Effects of Non-Identical
Data Distribution for Federated Visual Classification"), in the form used by NIID-Bench (Li et al. 2022):
for every class, the class's examples are divided among the parties in proportions drawn from
Dir(alpha, ..., alpha); a party that already holds at least n / num_parties examples gets no more
(proportion set to 0) so sizes stay comparable. Small alpha -> each party sees few classes; large alpha
-> close to IID. The draw is repeated until every party holds at least ``min_size`` examples, and at least
``min_class_size`` of every class: a party that holds one class only has nothing to learn, and every method
compared on it ends on that class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_DIRICHLET_DRAWS = 1000


def _check_parties(n: int, num_parties: int, min_size: int) -> None:
    if num_parties < 1:
        raise ValueError(f"num_parties must be >= 1, got {num_parties}")
    if n < num_parties * min_size:
        raise ValueError(
            f"cannot give {num_parties} parties at least {min_size} examples each from only {n} examples"
        )


def iid_partition(n: int, num_parties: int, seed: int) -> list[list[int]]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into ``num_parties`` near-equal parts (sorted)."""
    _check_parties(n, num_parties, 1)
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(part.tolist()) for part in np.array_split(order, num_parties)]


def dirichlet_partition(
    labels: Sequence[int], num_parties: int, alpha: float, seed: int, min_size: int = 10, min_class_size: int = 0
) -> list[list[int]]:
    """Label-skewed (non-IID) split of example indices; see the module docstring for the scheme.

    Deterministic for a given ``seed``. Raises ``ValueError`` if ``min_size`` cannot be met.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    n = labels.shape[0]
    _check_parties(n, num_parties, min_size)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(MAX_DIRICHLET_DRAWS):
        parts: list[list[int]] = [[] for _ in range(num_parties)]
        for cls in classes:
            members = rng.permutation(np.flatnonzero(labels == cls))
            proportions = rng.dirichlet(np.full(num_parties, alpha))
            full = np.array([len(part) >= n / num_parties for part in parts])
            proportions = np.where(full, 0.0, proportions)
            proportions = (
                proportions / proportions.sum()
                if proportions.sum() > 0
                else np.full(num_parties, 1 / num_parties)
            )
            cuts = (np.cumsum(proportions) * len(members)).astype(int)[:-1]
            for part, chunk in zip(parts, np.split(members, cuts)):
                part.extend(chunk.tolist())
        if min(len(part) for part in parts) >= min_size and _smallest_class(labels, parts, classes) >= min_class_size:
            return [sorted(part) for part in parts]
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) draw in {MAX_DIRICHLET_DRAWS} gave all {num_parties} parties >= "
        f"{min_size} examples and >= {min_class_size} of every class; raise alpha or lower min_size/min_class_size"
    )


def _smallest_class(labels: np.ndarray, parts: list[list[int]], classes: np.ndarray) -> int:
    """The fewest examples any party holds of any class."""
    return min(int(np.sum(labels[np.asarray(part, dtype=int)] == cls)) for part in parts for cls in classes)
