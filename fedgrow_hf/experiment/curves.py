"""Learning curves: where a training is evaluated (every round's worth of steps and its last step) and a
callback that evaluates there, keeping every evaluation's metrics by step."""

from __future__ import annotations

from collections.abc import Iterable

from transformers import TrainerCallback


def evaluation_steps(total: int, every: int) -> list[int]:
    """Every ``every`` steps of a ``total``-step training, and its last step: a learning curve at the
    resolution of a round. The one rule for where held-out figures are taken, so that the server knows
    a party's curve points without being told them."""
    return sorted({*range(every, total, every), total})


class EvaluateAt(TrainerCallback):
    """Evaluate after each of ``steps``, keeping the metrics of every evaluation (all evaluation datasets)
    by step in ``history``."""

    def __init__(self, steps: Iterable[int]) -> None:
        self.steps = frozenset(steps)
        self.history: dict[int, dict[str, float]] = {}

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            control.should_evaluate = True
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.history.setdefault(state.global_step, {}).update(metrics or {})
