"""The stream of batches a training cut into pieces trains on, so that the pieces train as one run.

A ``Trainer`` seeds its sampler from ``args.seed`` when it is built, so a new Trainer per piece (a federated
round, each run by its own Trainer) would draw the same first batches every time: a party with 10 steps of
16 examples a round would train on the same 160 examples for the whole federation. Piece ``r`` instead
trains on steps ``(r - 1) * max_steps ...`` of one endless stream of seeded epoch permutations
(:class:`StreamSampler`), exactly the batches one long training would have seen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Sampler
from transformers import Trainer


class StreamSampler(Sampler[int]):
    """Positions ``first .. first + count - 1`` of an endless stream of example indices: epoch ``e`` of the
    stream is a permutation of ``range(num_examples)`` seeded by ``(seed, e)``.

    A training cut into pieces (federated rounds, each run by its own ``Trainer``) that takes consecutive
    pieces of one stream sees the very examples, in the very order, of one uninterrupted training.
    """

    def __init__(self, num_examples: int, seed: int, first: int, count: int) -> None:
        if num_examples < 1:
            raise ValueError("a training stream needs at least one example")
        self.num_examples, self.seed, self.first, self.count = num_examples, seed, first, count

    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def __iter__(self):
        epoch, order = -1, None
        for position in range(self.first, self.first + self.count):
            if position // self.num_examples != epoch:
                epoch = position // self.num_examples
                order = self.permutation(epoch)
            yield int(order[position % self.num_examples])

    def __len__(self) -> int:
        return self.count


class StreamTrainer(Trainer):
    """A ``Trainer`` whose ``max_steps`` steps are the ones starting at step ``first_step`` of a training on
    :class:`StreamSampler`'s stream (seeded by ``args.seed``): what a round of a longer training trains on."""

    def __init__(self, *args: Any, first_step: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_step = first_step

    def examples_per_step(self) -> int:
        return self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps

    def _get_train_sampler(self, train_dataset=None) -> Sampler[int]:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        per_step = self.examples_per_step()
        return StreamSampler(len(dataset), self.args.seed, self.first_step * per_step, self.args.max_steps * per_step)
