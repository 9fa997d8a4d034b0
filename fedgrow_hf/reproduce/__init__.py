"""Reproduce Fed-Grow's comparison against its baselines on real data (``fedgrow reproduce PRESET``).

Methods live in :mod:`.methods`, presets (one TOML file each) in :mod:`.presets`, the optional choice of the
full-model learning rate in :mod:`.tuning`; the write-up by job: statistics over seeds in :mod:`.stats`, the
issue's targets and the paper's claims in :mod:`.targets` and :mod:`.claims`, where it ran in
:mod:`.environment`, plots in :mod:`.plots`, ``results.json`` in :mod:`.results` and ``RESULTS.md`` in
:mod:`.results_markdown`; :func:`reproduce` runs it all, once per seed. Needs the ``federated`` extra (Flower,
Ray) and matplotlib; importing :mod:`fedgrow_hf` does not import this package.
"""

from .methods import METHOD_LABELS, METHODS
from .presets import PRESETS, preset_config
from .runner import reproduce

__all__ = ["METHODS", "METHOD_LABELS", "PRESETS", "preset_config", "reproduce"]
