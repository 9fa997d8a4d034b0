"""Grown weights as ordinary PyTorch citizens: one ``torch.nn.utils.parametrize`` parametrization per weight.

A LiGO target has no weights of its own: each growable weight is the operator's output. Every such
weight is therefore a parametrized attribute of its module (``module.weight`` reads
``module.parametrizations.weight``), like any weight under PyTorch's parametrizations. What the
parametrization keeps as its ``original`` is a frozen, storage-free stand-in whose ``ds_numel`` is the
grown tensor's size -- the convention PEFT's and the Trainer's parameter counts read for weights whose
data lives elsewhere -- so ``print_trainable_parameters()`` counts the target's weights in "all params".

The operator grows all of a target's weights in one pass (depth mixing combines every source block), so
running it once per weight would repeat the whole computation for each of the target's ~100 weights.
The parametrizations therefore read one shared :class:`GrownWeights`, which the tuner refreshes once at
the start of each outermost forward pass. The tensors stay until the next refresh, so activation
checkpointing's recomputation during backward reads the very tensors (and graph) of the forward pass and
the operator gets its gradients (non-reentrant checkpointing, transformers' default).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from .shapes import TransformerWeights


@dataclass(frozen=True)
class GrownSlot:
    """Where one grown tensor goes: every (module, attribute) that shared the original parameter."""

    kind: str  # "shared" or "layers"
    path: str  # parameter path in the base model ("shared") or inside a block ("layers")
    layer: int | None
    owners: tuple[tuple[nn.Module, str], ...]
    shape: torch.Size  # the target's shape for it, which the operator's output must have

    def select(self, weights: TransformerWeights, blocks: Mapping[str, tuple[torch.Tensor, ...]], first_layer: int = 0) -> torch.Tensor:
        """This slot's tensor; ``blocks`` holds each stacked layer tensor already unbound into blocks.

        Unbinding once per tensor (rather than indexing it once per block) keeps the backward pass
        linear in depth: each index would scatter its gradient into a zero tensor of the full stack.
        """
        if self.kind == "shared":
            return weights.shared[self.path]
        return blocks[self.path][self.layer - first_layer]


class GrownWeights:
    """The operator output that every grown weight's parametrization reads (see the module doc).

    A plain object rather than a module: the parametrizations hold it, and a module there would register
    the operator again under every grown weight of the target.
    """

    def __init__(
        self,
        slots: Sequence[GrownSlot],
        grow: Callable[[Mapping[str, torch.Tensor], Collection[tuple[str, int]]], TransformerWeights],
    ) -> None:
        self._slots = tuple(slots)
        self._grow = grow
        self._tensors: list[torch.Tensor] | None = None
        self._partial: frozenset[int] = frozenset()  # slots grown for some rows only (see refresh)
        self._stale: frozenset[int] = frozenset()
        self._narrowed: frozenset[int] = frozenset()  # slots grown with an axis at the source's width
        self._factors: dict[str, torch.Tensor] = {}  # the width factors their modules apply instead
        self._inside: dict[int, int] = {}  # narrowed slots whose module is running (by depth)
        self._whole: list[torch.Tensor] | None = None  # the whole target, for reads of narrowed slots elsewhere

    def __getstate__(self) -> dict:
        """What ``copy.deepcopy`` of a model copies: not the grown tensors, which hang on this operator's
        graph (PyTorch copies no tensor that is not a leaf of one); the copy grows its own at its first read."""
        return {**self.__dict__, "_tensors": None, "_whole": None, "_factors": {}}

    def refresh(
        self,
        rows: Mapping[str, torch.Tensor] | None = None,
        at_source_width: Collection[tuple[str, int]] = (),
        factors: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """Run the operator and keep its output until the next refresh.

        The last pass's tensors are dropped first: kept while the operator runs, they would make every
        training step hold two grown copies of the target at its start (a graph that still needs them,
        e.g. two forwards before one backward, keeps them itself).

        ``rows`` (shared tensor path -> row numbers) grows only those rows of a lookup table, in that order:
        a forward pass reads only its tokens' rows of the word embeddings, by their places among ``rows``
        (the tuner maps the lookup's ids). Such a slot is valid for this pass alone: after :meth:`end_pass`,
        reading it grows the whole target again.

        ``at_source_width`` (block tensor, axis) pairs leave that axis unexpanded, for the module that applies
        its factor (in ``factors``, by key: :meth:`factor`) to its activations instead
        (:class:`.layer.SourceWidthMap`). Such a slot and the factors are what its own module reads until the
        next refresh -- the pass, and activation checkpointing's recomputation of it in backward, which must
        compute what the pass did -- and the module tells when it runs (:meth:`enter`); read anywhere else, the
        slot is the whole tensor, grown apart (:meth:`tensor`).
        """
        rows = rows or {}
        self._tensors = self._whole = None
        self._factors = dict(factors or {})
        tensors = self._grown_tensors(rows, at_source_width)
        narrowed = {name for name, _ in at_source_width}
        self._partial = frozenset(i for i, slot in enumerate(self._slots) if slot.kind == "shared" and slot.path in rows)
        self._narrowed = frozenset(i for i, slot in enumerate(self._slots) if slot.kind == "layers" and slot.path in narrowed)
        self._stale = frozenset()
        self._tensors = tensors

    def _grown_tensors(self, rows: Mapping[str, torch.Tensor], at_source_width: Collection[tuple[str, int]]) -> list[torch.Tensor]:
        weights = self._grow(rows, at_source_width)
        blocks = weights.unbind_layers()
        return [slot.select(weights, blocks) for slot in self._slots]

    def end_pass(self) -> None:
        """The forward pass that the last refresh served is over: its row-restricted tables no longer hold
        the rows a reader may ask for (its graph keeps what its backward needs)."""
        self._stale = self._partial

    def clear(self) -> None:
        """Drop the grown tensors (and their graph); the next read runs the operator again."""
        self._tensors = self._whole = None
        self._narrowed, self._factors = frozenset(), {}

    def narrowed(self, index: int) -> bool:
        """Whether slot ``index`` is grown with an axis at the source's width (what its module reads now)."""
        return self._tensors is not None and index in self._narrowed

    def factor(self, key: str) -> torch.Tensor:
        """The width factor ``key`` that the modules of the narrowed slots apply to their activations."""
        return self._factors[key]

    def enter(self, indices: Sequence[int]) -> None:
        """The module owning slots ``indices`` starts running: its reads of them are its own (see :meth:`refresh`)."""
        for index in indices:
            self._inside[index] = self._inside.get(index, 0) + 1

    def leave(self, indices: Sequence[int]) -> None:
        """The module owning slots ``indices`` has finished (or failed)."""
        for index in indices:  # never below 0: an exception under torch.compile skips the hooks that leave
            self._inside[index] = max(self._inside.get(index, 0) - 1, 0)

    def tensor(self, index: int) -> torch.Tensor:
        """Slot ``index``'s grown tensor; a weight read before any forward pass, or a row-restricted one read
        after its pass, runs the operator (for the whole target), and so does the first read of a narrowed one
        outside its module."""
        if self._tensors is None or index in self._stale:
            self.refresh()
        if index in self._narrowed and not self._inside.get(index):
            if self._whole is None:
                self._whole = self._grown_tensors({}, ())
            return self._whole[index]
        return self._tensors[index]


class GrownWeightError(RuntimeError):
    """Growing a weight failed; the cause is chained (``__cause__``) and named in the message."""


class GrownParametrization(nn.Module):
    """The parametrization of one grown weight: the operator's output for its slot, on the weight's device.

    The device is that of the stand-in the module holds, so a target spread over devices (a ``device_map``)
    gets every grown weight where its module runs while the operator stays on one device. Assigning to a
    grown weight raises: it is the operator's output (PyTorch calls a parametrization without
    ``right_inverse`` not invertible).
    """

    def __init__(self, grown: GrownWeights, index: int) -> None:
        super().__init__()
        self.grown = grown
        self.index = index

    def forward(self, stand_in: torch.Tensor) -> torch.Tensor:
        """The grown tensor. An ``AttributeError`` raised while growing it is re-raised as
        :class:`GrownWeightError`: the weight is read through a property of the module, and Python treats an
        ``AttributeError`` escaping a property as a missing attribute, falling back to ``nn.Module.__getattr__``
        -- which would report "object has no attribute 'weight'" and hide the real failure."""
        try:
            return self.grown.tensor(self.index).to(stand_in.device)
        except AttributeError as error:
            raise GrownWeightError(f"growing weight slot {self.index} failed: {type(error).__name__}: {error}") from error

    def extra_repr(self) -> str:
        return f"slot={self.index}"


def grown_stand_in(param: nn.Parameter, device: torch.device) -> nn.Parameter:
    """A storage-free, frozen parameter on ``device`` that counts as ``param``'s size (``ds_numel``)."""
    stand_in = nn.Parameter(torch.empty(0, dtype=param.dtype, device=device), requires_grad=False)
    stand_in.ds_numel = param.numel()
    return stand_in


def is_grown_stand_in(param: torch.Tensor) -> bool:
    return param.numel() == 0 and hasattr(param, "ds_numel")


def parametrize_grown(slots: Sequence[GrownSlot], grown: GrownWeights) -> None:
    """Make every owner of every slot read its weight from ``grown`` (the owners hold stand-ins already)."""
    for index, slot in enumerate(slots):
        for module, name in slot.owners:
            parametrize.register_parametrization(module, name, GrownParametrization(grown, index), unsafe=True)


def unparametrize_grown(slot: GrownSlot, param: nn.Parameter) -> None:
    """Give ``slot``'s owners ``param`` as an ordinary parameter in place of the parametrization.

    PyTorch keeps a parametrized weight as a property of a class made for the module (``ParametrizedEmbedding``)
    and removing the parametrization deletes that property from the class. ``copy.deepcopy`` of a model keeps
    the class, so the copy and the original share it: merging a copy would remove the original's weights too
    (its next forward fails with "'ParametrizedEmbedding' object has no attribute 'weight'"). Each owner
    therefore gets a class of its own first."""
    for module, name in slot.owners:
        _own_class(module)
        parametrize.remove_parametrizations(module, name, leave_parametrized=False)
        module.register_parameter(name, param)


def _own_class(module: nn.Module) -> None:
    """Give a parametrized ``module`` a copy of its class, so that changing the class changes no other module."""
    shared = type(module)
    namespace = {key: value for key, value in vars(shared).items() if key not in ("__dict__", "__weakref__")}
    module.__class__ = type(shared.__name__, shared.__bases__, namespace)
