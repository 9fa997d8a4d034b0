"""The comparison presets build exactly the configs they were measured with.

``golden/presets.json`` holds, per preset, the built federation config (``FederationConfig.to_dict()`` with the
data folder ``/data``) and the comparison's settings, as the Python builders made them before the presets became
data. A kept run is reused by ``fedgrow reproduce --resume`` only if its config is equal to the preset's, so a
value changed by accident would silently rerun a long comparison, or mix two settings in one report. A
deliberate change edits the preset and this file together.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedgrow_hf.experiment.config import FederationConfig
from fedgrow_hf.reproduce.presets import PRESETS, preset_config

GOLDEN = json.loads((Path(__file__).parent / "golden" / "presets.json").read_text(encoding="utf-8"))
SETTINGS = ("summary", "budget", "seeds", "learning_rate_origin", "methods", "partitions", "scaling")


def _exact(value: object) -> str:
    """JSON with sorted keys: equal only if every value is, ``300`` and ``300.0`` told apart."""
    return json.dumps(value, sort_keys=True)


def test_the_golden_file_covers_every_preset():
    assert sorted(GOLDEN) == sorted(PRESETS)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_preset_builds_the_config_it_was_measured_with(name):
    built = FederationConfig.from_dict(preset_config(name, "/data")).to_dict()
    assert _exact(built) == _exact(GOLDEN[name]["config"])


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_preset_keeps_its_comparison_settings(name):
    preset = PRESETS[name]
    settings = {setting: getattr(preset, setting) for setting in SETTINGS}
    assert _exact(settings) == _exact({setting: GOLDEN[name][setting] for setting in SETTINGS})


def test_the_data_folder_is_joined_as_given():
    """``--data-dir ../shared/data`` gives ``../shared/data/agnews``, not an absolute path: the kept runs of
    ``fedgrow reproduce paper-agnews`` were measured with that string in their config."""
    assert preset_config("paper-agnews", "../shared/data")["data"]["source"] == "../shared/data/agnews"
