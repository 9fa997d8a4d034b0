"""What the test suite needs installed; tests/conftest.py checks it before collecting anything.

A plain module (not a conftest): several ``conftest`` modules share that name, so ``from conftest import``
would reach whichever was loaded last.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

# What nearly every test module imports, by import name; the README's install command brings them all.
TEST_DEPENDENCIES = ("torch", "transformers", "peft", "datasets", "sklearn", "flwr")
README_INSTALL = 'python -m pip install "torch==2.13.0" -e ".[fl,cli,demo,plots,dev]"'


def missing_modules(names: Iterable[str]) -> list[str]:
    """The modules of ``names`` this Python cannot import."""
    return [name for name in names if importlib.util.find_spec(name) is None]
