"""scripts/check_imports.py: the package keeps its layering, and the checker still finds what it looks for."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_imports.py"


@pytest.fixture(scope="module")
def checker():
    spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_imports"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules["check_imports"]


def test_fedgrow_hf_has_no_import_cycle_and_nothing_climbs_back_to_the_cli(checker):
    imports = checker.package_imports(ROOT)
    assert len(imports) > 100  # it did read the package
    assert checker.cycles(imports) == []
    assert checker.cli_climbers(imports) == []
    assert checker.experiment_climbers(imports) == []
    assert [found for found in checker.reproduce_federated(imports) if not checker.is_run_entry_point(found)] == []


def test_the_command_exits_zero_on_this_repository():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# The skeleton of a made-up fedgrow_hf: the packages the rules name, empty.
SKELETON = {"__init__.py": "", "federated/__init__.py": "", "federated/config.py": "", "reproduce/__init__.py": ""}


def _package(root: Path, files: dict[str, str]) -> Path:
    """A made-up ``fedgrow_hf`` under ``root``: :data:`SKELETON` plus ``files`` (path -> source)."""
    for name, text in {**SKELETON, **files}.items():
        path = root / "fedgrow_hf" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_finds_cycles_cli_climbing_and_reproduce_reaching_into_federated(checker, tmp_path):
    root = _package(tmp_path, {
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from .a import g  # lazy: still a cycle\n",
        "cli/__init__.py": "from ..a import b\n",
        "export.py": "from fedgrow_hf.cli import main\n",
        "federated/simulate.py": "",
        "reproduce/runner.py": "from ..federated.simulate import simulate\nfrom ..federated.config import Config\n",
    })
    imports = checker.package_imports(root)
    assert checker.cycles(imports) == [["fedgrow_hf.a", "fedgrow_hf.b"]]
    assert [found.importer for found in checker.cli_climbers(imports)] == ["fedgrow_hf.export"]
    reaching = checker.reproduce_federated(imports)
    assert [(found.target, found.names, checker.is_run_entry_point(found)) for found in reaching] == [
        ("fedgrow_hf.federated.simulate", ("simulate",), True),
        ("fedgrow_hf.federated.config", ("Config",), False),
    ]
    assert checker.main(["--root", str(root)]) == 1


def test_the_experiment_layer_must_not_import_the_layers_built_on_it(checker, tmp_path):
    root = _package(tmp_path, {"experiment/__init__.py": "", "experiment/config.py": "from ..federated import config\n",
                               "experiment/data.py": "from fedgrow_hf.recipe import grow\n", "recipe.py": ""})
    assert [(found.importer, found.target) for found in checker.experiment_climbers(checker.package_imports(root))] == [
        ("fedgrow_hf.experiment.config", "fedgrow_hf.federated.config"),
        ("fedgrow_hf.experiment.data", "fedgrow_hf.recipe"),
    ]
    assert checker.main(["--root", str(root)]) == 1
