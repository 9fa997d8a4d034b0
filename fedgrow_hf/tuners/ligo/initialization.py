"""Lossless initialisation of a growth stage: the grown model starts by computing the source's function.

Two building blocks (bert2BERT, LEMON):

* an *expansion* ``E`` (n_out x n_in) copies input unit ``i mod n_in`` to output unit ``i``: whatever
  produces vectors of a space (weight rows, biases, LayerNorm parameters, embeddings) is copied;
* a *contraction* ``C`` with the same support and ``C^T E = I``: whatever consumes vectors of the space
  (weight columns) splits each source unit's weight over its copies, so the consumer computes what it
  computed before. The split is deliberately uneven (LEMON's symmetry breaking): with even splits two
  copies get equal gradients forever and the wider model would never use its width.

This is exact for any ratio in spaces read only linearly (FFN neurons -- SwiGLU's gate and up
projections copy the same neurons, so their product is copied too --, attention values, whole heads).
Attention logits are a product of two expansions; the key side uses the contraction instead, so
``q'.k' = q.k`` for any head widening, and the query is scaled for the target's ``1/sqrt(head_dim)``.
Under rotary position embeddings a head's dimensions are rotated at frequencies set by ``head_dim``, so
only heads of the source's size are exact. Under grouped-query attention a copied query head must read
a copy of its own key/value head (:func:`grouped_query_heads`).

The residual stream. A LayerNorm over it keeps its statistics only if every unit has the same number
of copies, so a LayerNorm-ed stream is exact for integer ratios only: the stream's map E must commute
with the per-unit gains (so each row of E has one nonzero) and with mean-centring (so E maps the
all-ones vector to a constant vector: every nonzero equal, every unit copied equally often). That holds
for post-LN (BERT) and pre-LN (GPT-2) alike. (LEMON's average expansion for pre-LN appends copies of the
stream's mean instead: the variance over ``D`` units is ``d/D`` times the source's, so it is exact only
with the gains scaled by ``sqrt(d/D)`` and epsilon by ``d/D`` -- a config field the target shares with its
source -- and is not used here.)

An RMSNorm-ed stream (Llama) is exact for *any* width ``D >= d``, with norm-preserving copies
(:func:`norm_preserving_expansion`). Claim: let unit ``i`` of the source stream have ``m_i`` copies,
each scaled by ``s_i = sqrt(D / (d m_i))``, so ``x'_j = s_i x_i`` for every copy ``j`` of ``i``. Then

* ``mean(x'^2) = (1/D) sum_i m_i s_i^2 x_i^2 = (1/D) sum_i (D/d) x_i^2 = mean(x^2)`` exactly, so
  ``RMSNorm'(x')`` divides by the source's ``sqrt(mean(x^2) + eps)``, epsilon included;
* a block norm's gain grows like the stream (``g'_j = s_i g_i``), so its output is
  ``n'_j = s_i^2 n_i``; its readers (query/key/value, gate/up) consume with ``C_ji = q_j / s_i^2``,
  where ``q`` is the contraction's split (``sum`` of ``q_j`` over the copies of ``i`` is 1), so
  ``sum_j W_i C_ji n'_j = W_i n_i``: each reader computes what it computed;
* writers (embeddings, attention output, FFN output) produce ``E delta`` with ``E_ji = s_i``, so the
  stream stays ``x' = E x`` through every block;
* the last norm is read only by the output embedding, which is grown like an input embedding
  (``L'_vj = s_i L_vi``: tied or not, it is one producer-side factor), so the norm takes the consumer
  side: ``g'_j = q_j g_i / s_i^2``, ``n'_j = q_j n_i / s_i`` and ``logits'_v = sum_j s_i L_vi q_j n_i / s_i
  = logits_v``.

For integer ratios ``s_i = 1`` and this is the plain copy of any LayerNorm-ed stream; for others
nothing but the norm's mean-centring stops it, which RMSNorm does not have. (A LayerNorm's bias in
the last norm would need the same ``1 / s_i`` as its gain, which only ``s_i = 1`` gives.) No learned
gain is rescaled and no epsilon changes: the target's config is the source's in every fixed field.

Depth (:func:`identity_depth_plan`): new blocks start as the identity. A block whose residual writers
(attention output, FFN output) are zero passes its input through in a pre-LN model; in a post-LN model
it still normalises, so the block before it ends in a plain normalisation and the new block's last
LayerNorm carries the source block's gain and bias (``LN(LN0(x)) = LN0(x)`` up to ``eps``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def copy_matrix(sources: Sequence[int], n_in: int) -> torch.Tensor:
    """Output unit ``i`` copies input unit ``sources[i]``."""
    matrix = torch.zeros(len(sources), n_in)
    matrix[torch.arange(len(sources)), torch.as_tensor(list(sources), dtype=torch.long)] = 1.0
    return matrix


def expansion(n_out: int, n_in: int) -> torch.Tensor:
    """Copy matrix: output unit ``i`` copies input unit ``i mod n_in`` (drops inputs when n_out < n_in)."""
    return copy_matrix([i % n_in for i in range(n_out)], n_in)


def split(copies: torch.Tensor, asymmetric: bool = True) -> torch.Tensor:
    """The consumer side of a copy matrix: each input unit's copies share weight 1 (``split^T copies = I``
    on the units that have copies).

    ``asymmetric`` splits a unit with ``k`` copies as ``2c / (k (k + 1))`` for its c-th copy (c = 1..k),
    otherwise evenly (``1/k``, Net2Net).
    """
    copy_number = copies.cumsum(0) * copies  # c for the c-th copy of each input unit
    counts = copies.sum(0, keepdim=True).clamp(min=1.0)
    if asymmetric:
        return 2.0 * copy_number / (counts * (counts + 1.0))
    return copies / counts


def contraction(n_out: int, n_in: int, asymmetric: bool = True) -> torch.Tensor:
    """The consumer side of :func:`expansion` (:func:`split`)."""
    return split(expansion(n_out, n_in), asymmetric)


def norm_preserving_expansion(n_out: int, n_in: int, asymmetric: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual stream's producer and consumer factors for an RMSNorm-ed stream of any width.

    Producer: :func:`expansion` with the copies of a unit that has ``m`` of them scaled by
    ``sqrt(n_out / (n_in m))``, so that ``E^T E = (n_out / n_in) I`` and the mean square of ``E x`` is
    that of ``x``. Consumer: the split divided by the squared scale (it reads an RMSNorm output whose gain
    grew with ``E``). Both are the plain copies when ``n_in`` divides ``n_out``. Proof: module docstring.
    """
    copies = expansion(n_out, n_in)
    squared_scale = n_out / (n_in * copies.sum(0).clamp(min=1.0))
    return copies * squared_scale.sqrt(), split(copies, asymmetric) / squared_scale


def grouped_query_heads(heads_out: int, groups_out: int, heads_in: int, groups_in: int) -> list[int]:
    """For each target query head, the source query head it copies, under grouped-query attention.

    Query head ``h`` of a model with ``H`` heads in ``KV`` key/value groups reads key/value head
    ``h // (H / KV)``. Target group ``j'`` copies source group ``j = j' mod KV`` (:func:`expansion`); its
    ``n' = H' / KV'`` heads copy the ``n = H / KV`` heads of group ``j``, the c-th copy of the group
    (``c = j' // KV``) holding heads ``(c n' + r) mod n`` for ``r < n'``. So every target head reads a copy
    of the key/value head its source head reads, and every source head is copied when each source group
    has at least ``n / n'`` copies. Without grouping (``H = KV``, ``H' = KV'``) this is ``h mod H``.
    """
    per_group_out, per_group_in = heads_out // groups_out, heads_in // groups_in
    sources = []
    for head in range(heads_out):
        group, rank = divmod(head, per_group_out)
        copy, source_group = divmod(group, groups_in)
        sources.append(source_group * per_group_in + (copy * per_group_out + rank) % per_group_in)
    return sources


def identity_depth_plan(n_out: int, n_in: int) -> list[tuple[int, bool]]:
    """For each target block: ``(source block, is_new)``. New blocks follow source blocks evenly.

    The last source block stays last (its output is what the source's head reads), so the new blocks
    are spread over the gaps after blocks ``0 .. n_in - 2`` (after block 0 when the source has one).
    """
    if n_out < n_in:
        raise ValueError(f"cannot grow {n_in} blocks into {n_out}")
    extra, gaps = n_out - n_in, max(n_in - 1, 1)
    plan: list[tuple[int, bool]] = []
    for block in range(n_in):
        plan.append((block, False))
        if block < gaps:
            plan += [(block, True)] * ((block + 1) * extra // gaps - block * extra // gaps)
    return plan


def repeat_depth(n_out: int, n_in: int, method: str) -> torch.Tensor:
    """LiGO's repeating depth initialisations (not function-preserving when deeper): ``stack`` repeats
    the source stack (StackBERT), ``interpolate`` repeats each source block in place."""
    if method == "stack":
        cols = torch.arange(n_out) % n_in
    elif method == "interpolate":
        cols = (torch.arange(n_out) * n_in) // n_out
    else:
        raise ValueError(f"unknown repeating depth_init {method!r}; expected 'stack' or 'interpolate'")
    return torch.nn.functional.one_hot(cols, n_in).float()
