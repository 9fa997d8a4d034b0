"""The test suite's own set-up (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

from tests.dependencies import README_INSTALL, TEST_DEPENDENCIES, missing_modules


def test_a_python_without_the_dependencies_gets_one_clear_error():
    """tests/conftest.py's pytest_configure names what is missing and the README's install command."""
    assert missing_modules(TEST_DEPENDENCIES) == []
    assert missing_modules(["torch", "fedgrow_no_such_module"]) == ["fedgrow_no_such_module"]
    assert README_INSTALL in (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
