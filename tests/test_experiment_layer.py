"""The experiment layer: old module paths still import (with a DeprecationWarning) the very same objects,
and imports flow one way (no circle, ``reproduce`` asks ``federated`` only for what runs a federation, and
nothing outside the CLI imports it)."""

from __future__ import annotations

import ast
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


def _imports(path: Path, module: str) -> set[str]:
    """The fedgrow_hf modules ``path`` imports anywhere in it (function-local imports included)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("fedgrow_hf")}


def _module_graph() -> dict[str, set[str]]:
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    return {name: {target for target in _imports(path, name) if target in files and target != name}
            for name, path in files.items()}


def test_imports_flow_one_way():
    graph = _module_graph()
    outside_cli = {name: targets for name, targets in graph.items() if not name.startswith("fedgrow_hf.cli")}
    assert {name for name, targets in outside_cli.items() if any(t.startswith("fedgrow_hf.cli") for t in targets)} == set()
    reproduce = {target for name, targets in graph.items() if name.startswith("fedgrow_hf.reproduce")
                 for target in targets if target.startswith("fedgrow_hf.federated")}
    assert reproduce <= FEDERATION_ENTRY_POINTS
    experiment = {target for name, targets in graph.items() if name.startswith("fedgrow_hf.experiment")
                  for target in targets}
    assert not {t for t in experiment if t.startswith(("fedgrow_hf.federated", "fedgrow_hf.reproduce",
                                                      "fedgrow_hf.recipe", "fedgrow_hf.cli"))}


def test_no_import_circle():
    graph = _module_graph()
    # a package's __init__ that re-exports its modules is not a circle with them
    edges = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges[name]):
            if state.get(target) == 1:
                pytest.fail("import circle: " + " -> ".join([*path[path.index(target):], target]))
            if target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
