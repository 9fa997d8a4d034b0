"""The experiment layer: old module paths still import (with a DeprecationWarning) the very same objects,
and imports flow one way (no circle, ``reproduce`` asks ``federated`` only for what runs a federation, and
nothing outside the CLI imports it)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

import fedgrow_hf.federated
from fedgrow_hf.data import common
from fedgrow_hf.experiment import config, curves, data, models, parties, recipe_data, stream, training
from fedgrow_hf.federated import run_config
from fedgrow_hf.sources import MINILM_HUB_ID, minilm_path

PACKAGE = Path(fedgrow_hf.federated.__file__).resolve().parents[1]
# what reproduce/ may import from federated/: the entry points that run a federation and what they return
FEDERATION_ENTRY_POINTS = {"fedgrow_hf.federated.engine", "fedgrow_hf.federated.simulate"}


def _import_fresh(monkeypatch, name: str):
    """Import ``name`` as if for the first time (the test process may have imported it already)."""
    monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delattr(fedgrow_hf.federated, name.rsplit(".", 1)[1], raising=False)
    return importlib.import_module(name)


def test_old_config_path_warns_once_and_holds_the_same_objects(monkeypatch):
    with pytest.warns(DeprecationWarning, match="fedgrow_hf.experiment.config"):
        old = _import_fresh(monkeypatch, "fedgrow_hf.federated.config")
    assert old.FederationConfig is config.FederationConfig and old.ConfigError is config.ConfigError
    assert old.check_known_keys is config.check_known_keys and old.resolve_run is run_config.resolve_run
    with pytest.raises(old.ConfigError, match="unknown"):  # raised by the new module, caught via the old path
        config.FederationConfig.from_dict({"no_such_table": {}})


def test_old_task_path_warns_and_holds_the_same_functions(monkeypatch):
    with pytest.warns(DeprecationWarning, match="fedgrow_hf.experiment"):
        old = _import_fresh(monkeypatch, "fedgrow_hf.federated.task")
    assert old.build_party_model is parties.build_party_model and old.load_source is parties.load_source
    assert old.party_datasets is data.party_datasets and old.common_test_set is data.common_test_set
    assert old.target_config is models.target_config and old.training_arguments is training.training_arguments
    assert old.finetune_eval_steps is training.finetune_eval_steps and old.MINILM == models.MINILM


def test_names_moved_out_of_the_trainer_module_warn_and_are_the_same():
    from fedgrow_hf.federated import trainer

    for name, home in (("StreamSampler", stream), ("EvaluateAt", curves), ("evaluation_steps", curves)):
        with pytest.warns(DeprecationWarning, match=f"experiment.{home.__name__.rsplit('.', 1)[1]}"):
            assert getattr(trainer, name) is getattr(home, name)
    assert trainer.StreamTrainer is stream.StreamTrainer


def test_source_name_is_importable_from_the_tuner_config():
    from fedgrow_hf.tuners.ligo.config import source_name

    assert source_name is common.source_name


def test_the_recipe_keeps_its_names_and_grows_with_the_one_classifier_growth():
    from fedgrow_hf import recipe

    assert recipe.grow_classifier is models.grow_classifier
    assert recipe.classification_model_class is models.classification_model_class
    assert recipe.DatasetInfo is recipe_data.DatasetInfo
    with pytest.warns(DeprecationWarning, match="classification_model_class"):
        assert set(recipe.CLASSIFICATION_MODELS) == {"vit"}


def test_the_minilm_locator_falls_back_or_says_how_to_install(without_minilm):
    assert minilm_path(fallback=MINILM_HUB_ID) == MINILM_HUB_ID
    with pytest.raises(ImportError, match=r"fedgrow-hf\[demo\]"):
        minilm_path()
