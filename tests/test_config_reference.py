"""docs/config.md is the config schema as the settings' own metadata describe it (scripts/config_reference.py)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedgrow_hf.experiment.config import FederationSettings, bounded

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "config_reference.py"


@pytest.fixture(scope="module")
def reference():
    spec = importlib.util.spec_from_file_location("config_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["config_reference"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["config_reference"]


def test_the_page_is_up_to_date(reference):
    assert reference.PAGE.read_text(encoding="utf-8") == reference.render(), (
        "docs/config.md is out of date: run python scripts/config_reference.py")


def test_every_setting_of_every_table_is_on_the_page(reference):
    page = reference.PAGE.read_text(encoding="utf-8")
    for item in reference.TABLES:
        if isinstance(item, tuple):
            title, settings = item
            section = page.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
            assert all(f"| `{name}` |" in section for name in settings.__dataclass_fields__), title


def test_a_row_says_what_validation_enforces(reference):
    """The range and the choices on the page are those ``validate`` checks, and the default the dataclass's."""
    rows = {line.split(" | ")[0]: line for line in reference.table_section("[federation]", FederationSettings)
            .splitlines() if line.startswith("| `")}
    assert rows["| `trim_fraction`"].split(" | ")[2:4] == ["`0.2`", "in [0, 0.5)"]
    assert '`"merge"`' in rows["| `phase2`"].split(" | ")[3]


def test_a_setting_without_help_is_refused(reference):
    @dataclass
    class Undocumented:
        documented: int = bounded(1, 0, help="a documented setting")
        also: int = 2

    with pytest.raises(ValueError, match="Undocumented.also has no help"):
        reference.table_section("[x]", Undocumented)
