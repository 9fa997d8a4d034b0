"""The PEFT internals fedgrow-hf's LIGO method depends on: when a PEFT release moves one, this fails
first and says which (``pyproject.toml`` pins PEFT below the next minor release for that reason)."""

from __future__ import annotations

import importlib
import json

import peft
import pytest

import fedgrow_hf  # noqa: F401  (registers LIGO with PEFT)

# (module, attribute): everything outside PEFT's public API that the extension imports or touches
INTERNALS = [
    ("peft.utils", "PeftType"),
    ("peft.utils", "register_peft_method"),
    ("peft.mapping", "PEFT_TYPE_TO_TUNER_MAPPING"),
    ("peft.mapping", "PEFT_TYPE_TO_CONFIG_MAPPING"),
    ("peft.tuners.tuners_utils", "BaseTuner"),
    ("peft.tuners.tuners_utils", "BaseTunerLayer"),
    ("peft.tuners.tuners_utils", "_is_key_under_prefixes"),
    ("peft.utils.other", "AuxiliaryTrainingWrapper"),
    ("peft.utils.other", "set_additional_trainable_modules"),
    ("peft.auto", "MODEL_TYPE_TO_PEFT_MODEL_MAPPING"),
    ("peft.auto", "check_import_allowlist"),
    ("peft.auto", "get_default_import_allowlist"),
]


@pytest.mark.parametrize(("module", "name"), INTERNALS, ids=[f"{m}.{n}" for m, n in INTERNALS])
def test_peft_still_has_what_the_ligo_extension_uses(module, name):
    assert hasattr(importlib.import_module(module), name), (
        f"PEFT {peft.__version__} has no {module}.{name}: fedgrow-hf's LIGO extension must be updated for it"
    )


def test_ligo_is_a_peft_type_that_round_trips_through_adapter_config(tmp_path):
    from peft import PeftConfig
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import PeftType

    from fedgrow_hf import LiGOConfig, LiGOModel

    member = PeftType("LIGO")
    assert member is PeftType.LIGO and "LIGO" in PeftType.__members__, f"PEFT {peft.__version__}: enum extension broke"
    assert PEFT_TYPE_TO_CONFIG_MAPPING[member] is LiGOConfig and PEFT_TYPE_TO_TUNER_MAPPING[member] is LiGOModel
    config = LiGOConfig(target_config={"model_type": "bert", "hidden_size": 64})
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["peft_type"] == "LIGO"
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert type(loaded) is LiGOConfig and loaded.to_dict() == config.to_dict()
