"""Lossless initialisation of a growth stage: the grown model starts by computing the source's function.

Two building blocks (bert2BERT, LEMON):

* an *expansion* ``E`` (n_out x n_in) copies input unit ``i mod n_in`` to output unit ``i``: whatever
  produces vectors of a space (weight rows, biases, LayerNorm parameters, embeddings) is copied;
* a *contraction* ``C`` with the same support and ``C^T E = I``: whatever consumes vectors of the space
  (weight columns) splits each source unit's weight over its copies, so the consumer computes what it
  computed before. The split is deliberately uneven (LEMON's symmetry breaking): with even splits two
  copies get equal gradients forever and the wider model would never use its width.

This is exact for any ratio in spaces read only linearly (FFN neurons, attention values, whole heads).
Attention logits are a product of two expansions; the key side uses the contraction instead, so
``q'.k' = q.k`` for any head widening, and the query is scaled for the target's ``1/sqrt(head_dim)``.
A LayerNorm over the residual stream keeps its statistics only if every unit has the same number of
copies, so the residual stream is exact for integer ratios only; in a post-LayerNorm model (BERT) no
linear expansion does better (a LayerNorm output feeds the residual path, so the stream's map must
commute with the normalisation and with the per-unit gains: copies of equal multiplicity).

Depth (:func:`identity_depth_plan`): new blocks start as the identity. A block whose residual writers
(attention output, FFN output) are zero passes its input through in a pre-LN model; in a post-LN model
it still normalises, so the block before it ends in a plain normalisation and the new block's last
LayerNorm carries the source block's gain and bias (``LN(LN0(x)) = LN0(x)`` up to ``eps``).
"""

from __future__ import annotations

import torch


def expansion(n_out: int, n_in: int) -> torch.Tensor:
    """Copy matrix: output unit ``i`` copies input unit ``i mod n_in`` (drops inputs when n_out < n_in)."""
    matrix = torch.zeros(n_out, n_in)
    rows = torch.arange(n_out)
    matrix[rows, rows % n_in] = 1.0
    return matrix


def contraction(n_out: int, n_in: int, asymmetric: bool = True) -> torch.Tensor:
    """The consumer side of :func:`expansion`: each input unit's copies share weight 1.

    ``asymmetric`` splits a unit with ``k`` copies as ``2c / (k (k + 1))`` for its c-th copy (c = 1..k),
    otherwise evenly (``1/k``, Net2Net).
    """
    matrix = expansion(n_out, n_in)
    copy_number = matrix.cumsum(0) * matrix  # c for the c-th copy of each input unit
    copies = matrix.sum(0, keepdim=True).clamp(min=1.0)
    if asymmetric:
        return 2.0 * copy_number / (copies * (copies + 1.0))
    return matrix / copies


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
