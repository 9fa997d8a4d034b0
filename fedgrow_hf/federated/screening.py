"""Every party's reply is screened before the server uses any of it: a reply may be malformed, oversized,
lie about its example count or its identity, or carry values built to dominate the average.

Why before Flower's strategies (the screen runs inside :class:`.strategy.ScreenedStrategy`, a wrapper in
front of them): Flower's strategies decode, weight and check the consistency of replies themselves (``np.load`` of each array, ``InconsistentMessageReplies`` when two replies differ in their
records), so a single crafted reply would raise inside them and end the server. The screen turns each
problem into a named reason, the reply is dropped with a logged warning, and the round goes on with the
others. What passes is safe for any of Flower's strategies: one ``arrays`` record that decodes to exactly
the reference's keys, shapes and dtypes with finite values, within a norm bound of the round's centre
(the state the updates started from); one ``metrics`` record with exactly the expected keys, numbers in
their ranges, an integer example count in ``[1, max_num_examples]``; and a party id that belongs to the
node that sent it. What the screen keeps of a reply's text is one short printable line (:func:`sanitised`).
What passes may still be pulled towards the round's median before it is averaged (:mod:`.clipping`).
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Message

from .clipping import median_state, state_distance, state_norm

logger = logging.getLogger(__name__)

ARRAYS_KEY = "arrays"
INTERMEDIATE_KEY = "intermediate"  # the averaged intermediate sent with round 2 (``share_intermediate``)
METRICS_KEY = "metrics"
CONFIG_KEY = "config"
WEIGHT_KEY = "num-examples"
PARTY_KEY = "party"
NPY_STYPE = "numpy.ndarray"
# What a party reports after a phase-1 round and after its phase-2 fine-tuning (besides party and weight).
OPERATOR_METRICS = ("train_loss", "eval_loss_before", "eval_loss", "accuracy", "precision_macro")
FINETUNE_METRICS = ("train_loss", "eval_loss", "accuracy", "precision_macro")
# A federated phase-2 round also reports the held-out loss of the average it received, as a phase-1 round does:
# with the end of its previous round, what the average changed in the party (reproduce's aggregation effect).
FEDERATED_FINETUNE_METRICS = ("train_loss", "eval_loss_before", "eval_loss", "accuracy", "precision_macro")
# What a party reports after merging its final operator (phase2="merge": no training, its merged model scored).
MERGE_METRICS = ("eval_loss", "accuracy", "precision_macro")
# What a party adds after local phase 2: its held-out figures at every step of ``task.finetune_eval_steps``.
FINETUNE_CURVE = ("curve_accuracy", "curve_precision_macro", "curve_eval_loss")
# The range of every metric a party reports: shares in [0, 1]; losses non-negative and small enough that
# example-weighted means of them stay finite (a cross-entropy beyond 1e6 is meaningless anyway).
MAX_LOSS = 1e6
METRIC_RANGES = {
    **{name: (0.0, 1.0) for name in ("accuracy", "precision_macro", "curve_accuracy", "curve_precision_macro")},
    **{name: (0.0, MAX_LOSS) for name in ("train_loss", "eval_loss_before", "eval_loss", "curve_eval_loss")},
}
# The most of a reason (a party's error, a value it sent) that reaches the log and metrics.jsonl.
REASON_LIMIT = 200
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class UpdateRejected(ValueError):
    """One reply cannot be used; the message says why, naming the key or the metric."""


@dataclass
class DroppedUpdate:
    node_id: int
    party: int | None
    reason: str


def payload_bytes(record: ArrayRecord) -> int:
    """Bytes of the serialised arrays of ``record`` (what travels, without message framing)."""
    return sum(len(array.data) for array in record.values())


def decode_array(array: Array, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """The tensor an ``.npy``-serialised ``Array`` holds, if it is exactly ``shape`` and ``dtype``.

    The header is parsed and compared first, and the byte count checked against it, so a header that
    declares a huge shape is refused before anything is allocated (``np.load`` would try to allocate it).
    """
    if array.stype != NPY_STYPE:
        raise UpdateRejected(f"serialisation {array.stype!r} is not {NPY_STYPE!r}")
    stream = io.BytesIO(array.data)
    try:
        reader = _NPY_HEADER_READERS.get(np.lib.format.read_magic(stream))
        if reader is None:
            raise UpdateRejected("unsupported .npy format version")
        declared_shape, fortran_order, declared_dtype = reader(stream)
    except (ValueError, EOFError, OSError, SyntaxError) as error:
        raise UpdateRejected(f"not an .npy array ({type(error).__name__}: {error})") from error
    expected_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    if tuple(declared_shape) != tuple(shape):
        raise UpdateRejected(f"has shape {tuple(declared_shape)}, expected {tuple(shape)}")
    if declared_dtype != expected_dtype:
        raise UpdateRejected(f"has dtype {declared_dtype}, expected {expected_dtype}")
    count = math.prod(shape)
    held = len(array.data) - stream.tell()
    if held != count * expected_dtype.itemsize:
        raise UpdateRejected(f"holds {held} bytes of data, its header declares {count * expected_dtype.itemsize}")
    values = np.frombuffer(array.data, dtype=expected_dtype, count=count, offset=stream.tell())
    return torch.from_numpy(values.reshape(tuple(shape), order="F" if fortran_order else "C").copy())


def decode_state(
    record: ArrayRecord, reference: Mapping[str, torch.Tensor], max_bytes: int
) -> dict[str, torch.Tensor]:
    """The state dict ``record`` holds if it matches ``reference`` key for key (shape, dtype) with finite
    values and at most ``max_bytes`` of data; otherwise :class:`UpdateRejected` naming the key."""
    received, expected = set(record.keys()), set(reference)
    if received != expected:
        raise UpdateRejected(
            f"keys differ from the reference: unexpected {sorted(received - expected)[:5]}, "
            f"missing {sorted(expected - received)[:5]}"
        )
    size = payload_bytes(record)
    if size > max_bytes:
        raise UpdateRejected(f"update is {size} bytes, more than the bound of {max_bytes}")
    state = {}
    for key, array in record.items():
        try:
            value = decode_array(array, reference[key].shape, reference[key].dtype)
        except UpdateRejected as error:
            raise UpdateRejected(f"key {key!r} {error}") from error
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise UpdateRejected(f"key {key!r} has non-finite values")
        state[key] = value
    return state


@dataclass
class ScreenedReplies:
    """What :meth:`ReplyScreen.screen_round` found usable in one round, and what it dropped."""

    valid: list[Message]
    states: list[dict[str, torch.Tensor]]  # each valid reply's decoded arrays (empty without a reference)
    dropped: list[DroppedUpdate]
    centre: dict[str, torch.Tensor] | None  # what the norm bound and clipping measure distances from


@dataclass
class ReplyScreen:
    """The server's screen for one phase: what a reply must hold, and which party each node is.

    A node is bound to the first party id it reports; a reply naming the party of another connected node,
    or a second reply from one node in a round, is dropped. ``parties`` (node id -> party id) is shared
    by the phases of a run and checkpointed with it, so a node bound in phase 1 cannot claim another
    party in phase 2 or after a resume; a party whose node is no longer connected (``connected``, when the
    caller knows it) may be claimed by a new node, as after a server restart under Flower's simulation
    engine, which gives its nodes new ids. ``reference`` gives the keys, shapes and dtypes of the arrays
    (``None``: the reply must carry no arrays, as in local fine-tuning). ``curve_names`` are metrics that
    must be lists of exactly ``curve_length`` numbers (a learning curve at steps the server knows, so a
    party cannot say where its points lie). Without ``counts_examples`` a reply carries no example count
    (a party that discloses nothing but its id, :mod:`.disclosure`).
    """

    reference: Mapping[str, torch.Tensor] | None
    metric_names: tuple[str, ...]
    num_parties: int
    max_bytes: int
    max_num_examples: int
    norm_bound: float = 0.0
    curve_names: tuple[str, ...] = ()
    curve_length: int = 0
    counts_examples: bool = True
    parties: dict[int, int] = field(default_factory=dict)  # node id -> party id
    connected: set[int] | None = None  # the nodes connected now (None: unknown, every binding holds)

    def screen(
        self, replies: Iterable[Message], current: Mapping[str, torch.Tensor] | None = None
    ) -> tuple[list[Message], list[DroppedUpdate]]:
        """Split ``replies`` into usable ones and dropped ones (logged, each with its reason)."""
        screened = self.screen_round(replies, current)
        return screened.valid, screened.dropped

    def screen_round(
        self, replies: Iterable[Message], current: Mapping[str, torch.Tensor] | None = None
    ) -> ScreenedReplies:
        """Screen every reply on its own, then the round's arrays against their centre: ``current`` (the
        state the updates started from) or, where the server does not know it, the coordinate-wise median of
        the replies (:func:`.clipping.median_state`). With ``norm_bound`` > 0 an update farther from the
        centre than ``norm_bound * max(1, |centre|)`` is dropped."""
        valid, states, dropped, seen = [], [], [], set()
        for message in replies:
            node = message.metadata.src_node_id
            try:
                state = self._check(message, node, seen)
            except UpdateRejected as error:
                dropped.append(self._drop(node, str(error)))
            else:
                valid.append(message)
                states.append(state)
            seen.add(node)
        if self.reference is None or not valid:
            return ScreenedReplies(valid, [], dropped, None)
        centre = dict(current) if current is not None else median_state(states)
        bound = self.norm_bound * max(1.0, state_norm(centre))
        kept = []
        for message, state in zip(valid, states, strict=True):
            distance = state_distance(state, centre) if self.norm_bound else 0.0
            if distance <= bound:
                kept.append((message, state))
            else:
                dropped.append(self._drop(message.metadata.src_node_id, f"update is {distance:.4g} away from the "
                                          f"round's centre, beyond the bound {bound:.4g}"))
        return ScreenedReplies([m for m, _ in kept], [s for _, s in kept], dropped, centre)

    def party_of(self, message: Message) -> int:
        """The party a screened reply belongs to."""
        return self.parties[message.metadata.src_node_id]

    def _drop(self, node: int, reason: str) -> DroppedUpdate:
        party = self.parties.get(node)
        reason = sanitised(reason)
        logger.warning("dropping the reply of party %s (node %s): %s", party, node, reason)
        return DroppedUpdate(node, party, reason)

    def _check(self, message: Message, node: int, seen: set[int]) -> dict[str, torch.Tensor]:
        """The reply's decoded arrays (empty without a reference), once every check on it alone passed."""
        if message.has_error():
            raise UpdateRejected(f"party failed: {message.error.reason}")
        if node in seen:
            raise UpdateRejected("a second reply from the same node in one round")
        content = message.content
        arrays_expected = {ARRAYS_KEY} if self.reference is not None else set()
        if set(content.array_records) != arrays_expected or set(content.metric_records) != {METRICS_KEY} \
                or content.config_records:
            raise UpdateRejected(
                f"records {sorted(content.keys())}, expected {sorted({METRICS_KEY} | arrays_expected)}"
            )
        metrics = dict(content.metric_records[METRICS_KEY])
        self._bind(node, self._claimed_party(metrics))
        self._check_values(metrics)
        if self.reference is None:
            return {}
        return decode_state(content.array_records[ARRAYS_KEY], self.reference, self.max_bytes)

    def _claimed_party(self, metrics: dict[str, object]) -> int:
        """The party id the metrics name, once their keys are exactly the expected ones."""
        expected = {PARTY_KEY, *([WEIGHT_KEY] if self.counts_examples else []), *self.metric_names, *self.curve_names}
        if set(metrics) != expected:
            raise UpdateRejected(
                f"metrics differ: unexpected {sorted(set(metrics) - expected)}, missing {sorted(expected - set(metrics))}"
            )
        party = metrics[PARTY_KEY]
        if not _is_int(party) or not 0 <= party < self.num_parties:
            raise UpdateRejected(f"{PARTY_KEY}={party!r} is not a party id in [0, {self.num_parties})")
        return int(party)

    def _check_values(self, metrics: dict[str, object]) -> None:
        """An integer example count within bounds (where the reply counts its examples), every metric and
        curve point a number in its range (:data:`METRIC_RANGES`), curves of the expected length."""
        if self.counts_examples:
            weight = metrics[WEIGHT_KEY]
            if not _is_int(weight) or not 1 <= weight <= self.max_num_examples:
                raise UpdateRejected(f"{WEIGHT_KEY}={weight!r} is not an integer in [1, {self.max_num_examples}]")
        for name in self.metric_names:
            _check_metric(name, metrics[name])
        for name in self.curve_names:
            curve = metrics[name]
            if not isinstance(curve, list) or len(curve) != self.curve_length:
                length = len(curve) if isinstance(curve, list) else type(curve).__name__
                raise UpdateRejected(f"metric {name!r} is not a list of {self.curve_length} values (got {length})")
            for value in curve:
                _check_metric(name, value)

    def _bind(self, node: int, party: int) -> None:
        owner = next((other for other, bound in self.parties.items() if bound == party), None)
        if self.parties.get(node, party) != party:
            raise UpdateRejected(f"node {node} reported party {self.parties[node]} before, now {party}")
        if owner is not None and owner != node:
            if self.connected is None or owner in self.connected:
                raise UpdateRejected(f"{PARTY_KEY}={party} belongs to node {owner}")
            logger.warning("party %d moves from node %d (no longer connected) to node %d", party, owner, node)
            del self.parties[owner]
        self.parties[node] = party


def sanitised(text: str, limit: int = REASON_LIMIT) -> str:
    """``text`` as one printable line of at most ``limit`` characters: what the server keeps of anything a
    party sent (its error reason, a value it reported), so that a reply cannot fill the log and
    ``metrics.jsonl`` or put terminal escapes into them."""
    line = " ".join(_ANSI_ESCAPE.sub("", text).split())
    line = "".join(char if char.isprintable() else "?" for char in line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _check_metric(name: str, value: object) -> None:
    low, high = METRIC_RANGES.get(name, (-math.inf, math.inf))
    if not _is_finite_number(value) or not low <= value <= high:
        shown = sanitised(repr(value), 40)
        raise UpdateRejected(f"metric {name!r}={shown} is not a finite number in [{low:g}, {high:g}]")


def _is_finite_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
