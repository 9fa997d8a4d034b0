"""The width factors' arithmetic, checked against the plain formulas it computes faster.

The operator computes each factor once per growth, folds single-group factors into one matrix and applies
``group (x) unit`` without forming it; these tests pin that each shortcut equals the formula it replaces.
"""

from __future__ import annotations

import pytest
import torch

from fedgrow_hf.architectures import get_architecture_table
from fedgrow_hf.tuners.ligo.layer import GrowthStage, WidthFactor, apply_kronecker
from fedgrow_hf.tuners.ligo.shapes import ModelShape


def _explicit(tensor: torch.Tensor, dim: int, matrix: torch.Tensor) -> torch.Tensor:
    """Axis ``dim`` of ``tensor`` (leading layer axis) multiplied by ``matrix`` (or one matrix per layer)."""
    moved = tensor.movedim(dim, -1)
    if matrix.dim() == 3:
        out = torch.stack([layer @ m.T for layer, m in zip(moved, matrix)])
    else:
        out = moved @ matrix.T
    return out.movedim(-1, dim)


@pytest.mark.parametrize("per_layer", [False, True])
@pytest.mark.parametrize("dim", [1, 2])
def test_apply_kronecker_equals_the_explicit_kronecker_product(per_layer, dim):
    torch.manual_seed(0)
    layers, lead = 3, (3,) if per_layer else ()
    tensor = torch.randn(layers, 6, 6, dtype=torch.float64)
    group, unit = torch.randn(*lead, 4, 2, dtype=torch.float64), torch.randn(*lead, 5, 3, dtype=torch.float64)
    matrix = torch.stack([torch.kron(g, u) for g, u in zip(group, unit)]) if per_layer else torch.kron(group, unit)
    torch.testing.assert_close(apply_kronecker(tensor, dim, group, unit), _explicit(tensor, dim, matrix))
    torch.testing.assert_close(apply_kronecker(tensor, dim, None, matrix), _explicit(tensor, dim, matrix))


@pytest.mark.parametrize("num_layers", [None, 2])
def test_fan_in_factor_is_its_start_plus_the_scaled_offset(num_layers):
    factor = WidthFactor((2, 3), (5, 4), num_layers, width_step="fan_in")
    start_group, start_unit = torch.randn(2, 3), torch.randn(5, 4)
    factor.start_at(start_group, start_unit)
    lead = () if num_layers is None else (num_layers,)
    group, unit = factor.factors()
    torch.testing.assert_close(group, start_group.expand(*lead, 2, 3))  # the start, up to rounding
    torch.testing.assert_close(unit, start_unit.expand(*lead, 5, 4))
    with torch.no_grad():
        factor.group.add_(torch.randn_like(factor.group))
        factor.unit.add_(torch.randn_like(factor.unit))
    group, unit = factor.factors()
    torch.testing.assert_close(group, start_group + (factor.group - start_group) / 3)
    torch.testing.assert_close(unit, start_unit + (factor.unit - start_unit) / 4)


def test_plain_factor_is_its_parameter():
    factor = WidthFactor((1, 1), (5, 4), None, width_step="plain")
    factor.start_at(torch.ones(1, 1), torch.randn(5, 4))
    group, unit = factor.factors()
    assert group is factor.group and unit is factor.unit


@pytest.mark.parametrize("width_structure", ["head_kronecker", "dense"])
def test_stage_factors_apply_every_width_factor_matrix(width_structure):
    """A folded single-group factor (``group=None``) or a Kronecker pair: either way the stage applies
    exactly the factor's matrix, after its parameters moved off the start."""
    stage = GrowthStage(get_architecture_table("bert"), ModelShape(2, 32, 64, 2), ModelShape(3, 64, 128, 4),
                        width_structure)
    with torch.no_grad():
        for param in stage.width.parameters():
            param.add_(0.1 * torch.randn_like(param))
    folded = stage.factors()
    assert folded.keys() == stage.width.keys()
    assert any(group is None for group, _ in folded.values())  # the residual stream's, at least
    for key, (group, unit) in folded.items():
        matrix = stage.width[key].matrix()
        tensor = torch.randn(matrix.shape[0] if matrix.dim() == 3 else 1, 7, matrix.shape[-1])
        torch.testing.assert_close(apply_kronecker(tensor, 2, group, unit), _explicit(tensor, 2, matrix))
